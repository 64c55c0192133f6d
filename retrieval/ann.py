"""Faiss index choice, construction and search-parameter tuning for L2-normalised vectors.

All indexes use the inner product (cosine similarity on unit vectors) and are
wrapped in ``IndexIDMap`` so every vector carries a stable int64 id.

The ``auto`` rule, by number of vectors N (in the spirit of autofaiss):

* N <= ``FLAT_MAX_VECTORS``: exact ``IndexFlatIP``. On 2 cores one query
  against 200k 128-d vectors takes a few milliseconds and there is nothing to
  train or tune.
* larger: ``IndexIVFFlat`` with ``nlist`` ~ 4·sqrt(N) (a power of two),
  k-means trained on 64·nlist vectors: cheap to build, as small as the raw
  vectors, and on 1M clustered vectors far faster at recall >= 0.95 than the
  HNSW below (benchmarks/RESULTS.md).

``hnsw`` (``IndexHNSWFlat``, M=32, efConstruction=40; no training, memory
~ 4·D + 8·M·1.1 bytes a vector) is available on request; with this cheap
construction it needed efSearch=1024 for recall 0.96 at 1M vectors.

The search parameter (``efSearch`` or ``nprobe``) is then the smallest value
whose measured recall@10 against exact search reaches the target (0.95) for
queries placed among the indexed vectors, see :func:`tune_search_params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf")
FLAT_MAX_VECTORS = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
IVF_MIN_POINTS_PER_LIST = 39  # Faiss warns when k-means has fewer training points per centroid
IVF_TRAIN_POINTS_PER_LIST = 64  # k-means sample: 64·nlist vectors (Faiss' own cap is 256·nlist)
IVF_MAX_LISTS = 65_536
EF_SEARCH_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
DEFAULT_RECALL_TARGET = 0.95


@dataclass
class IndexSpec:
    """Which Faiss index to build and how to search it.

    Attributes:
        kind: ``"flat"``, ``"hnsw"`` or ``"ivf"``.
        build: construction parameters (``{"M", "efConstruction"}`` or ``{"nlist"}``).
        search: search parameters (``{"efSearch"}`` or ``{"nprobe"}``; empty for flat).
    """

    kind: str
    build: dict[str, int] = field(default_factory=dict)
    search: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "build": dict(self.build), "search": dict(self.search)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSpec:
        return cls(data["type"], dict(data.get("build", {})), dict(data.get("search", {})))


def ivf_num_lists(num_vectors: int) -> int:
    """``nlist`` for an IVF index: the power of two nearest 4·sqrt(N), with >= 39 points a list."""
    if num_vectors < 1:
        raise ValueError("an IVF index needs at least one vector to train its coarse quantizer")
    target = 2 ** round(math.log2(4 * math.sqrt(num_vectors)))
    return max(1, min(target, num_vectors // IVF_MIN_POINTS_PER_LIST, IVF_MAX_LISTS))


def choose_index_spec(num_vectors: int, index_type: str = "auto") -> IndexSpec:
    """The index to build for ``num_vectors`` vectors, with starting search parameters.

    Args:
        num_vectors: how many vectors the index will hold.
        index_type: ``"auto"`` applies the size rule of this module; ``"flat"``,
            ``"hnsw"`` or ``"ivf"`` force a type (parameters still follow the size).

    Returns:
        The spec; :func:`tune_search_params` refines its ``search`` entry once built.
    """
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {list(INDEX_TYPES)}, got {index_type!r}")
    if num_vectors < 0:
        raise ValueError(f"num_vectors must be >= 0, got {num_vectors}")
    if index_type == "auto":
        # IVF, not HNSW, beyond the exact range: on 1M clustered vectors (benchmarks/RESULTS.md) IVF
        # reached recall@10 0.998 at 87x the exact QPS, HNSW (M=32, efConstruction=40) 0.96 at 1.1x.
        index_type = "flat" if num_vectors <= FLAT_MAX_VECTORS else "ivf"
    if index_type == "flat":
        return IndexSpec("flat")
    if index_type == "hnsw":
        return IndexSpec("hnsw", {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}, {"efSearch": 64})
    nlist = ivf_num_lists(num_vectors)
    return IndexSpec("ivf", {"nlist": nlist}, {"nprobe": min(nlist, max(1, nlist // 64))})


def create_index(spec: IndexSpec, dim: int) -> faiss.IndexIDMap:
    """An empty (untrained for IVF) inner-product index with int64 ids."""
    if spec.kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif spec.kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, spec.build["M"], faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = spec.build["efConstruction"]
    elif spec.kind == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, spec.build["nlist"], faiss.METRIC_INNER_PRODUCT)
    else:
        raise ValueError(f"unknown index kind {spec.kind!r}")
    return faiss.IndexIDMap(inner)  # the Python wrappers keep `inner` and `quantizer` alive


def inner_index(index: faiss.Index) -> faiss.Index:
    """The index inside an ``IndexIDMap``, downcast to its concrete class."""
    return faiss.downcast_index(index.index)


def set_search_params(index: faiss.IndexIDMap, search: dict[str, int]) -> None:
    """Apply ``{"efSearch": ...}`` or ``{"nprobe": ...}`` to an index from :func:`create_index`."""
    inner = inner_index(index)
    if "efSearch" in search:
        inner.hnsw.efSearch = int(search["efSearch"])
    if "nprobe" in search:
        inner.nprobe = int(search["nprobe"])


def build_index(spec: IndexSpec, vectors: np.ndarray, ids: np.ndarray) -> faiss.IndexIDMap:
    """Create, train (IVF) and fill an index with ``vectors (N, D)`` under ``ids (N,)``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = create_index(spec, vectors.shape[1])
    if not index.is_trained:
        nlist = spec.build["nlist"]
        if len(vectors) < nlist:
            raise ValueError(f"an IVF index with {nlist} lists needs at least that many vectors to train")
        sample_size = IVF_TRAIN_POINTS_PER_LIST * nlist
        if len(vectors) > sample_size:
            sample = np.random.default_rng(0).choice(len(vectors), size=sample_size, replace=False)
            index.train(vectors[np.sort(sample)])
        else:
            index.train(vectors)
    index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    set_search_params(index, spec.search)
    return index


def index_ids(index: faiss.IndexIDMap) -> np.ndarray:
    """``(ntotal,)`` int64 ids, in storage order."""
    return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)


def stored_vectors(index: faiss.IndexIDMap) -> np.ndarray:
    """``(ntotal, D)`` float32 vectors in storage order (aligned with :func:`index_ids`)."""
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexIVF):
        inner.make_direct_map()
    return inner.reconstruct_n(0, inner.ntotal)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth (Q, k)`` ids that appear in the same row of ``found (Q, k)``."""
    if truth.size == 0:
        return 1.0
    hits = sum(len(np.intersect1d(row_found, row_truth)) for row_found, row_truth in zip(found, truth))
    return hits / truth.size


def _tuning_queries(vectors: np.ndarray, num_queries: int, rng: np.random.Generator) -> np.ndarray:
    """``(Q, D)`` unit queries that are not in the index but lie among its vectors, like held-out images.

    Each is a sampled vector moved in a random direction by the distance to its
    own nearest neighbour, so it is about as far from the indexed vectors as
    they are from each other. Indexed vectors themselves would be optimistic
    queries for HNSW, whose greedy search lands on them directly.
    """
    sample = vectors[rng.choice(len(vectors), size=min(num_queries, len(vectors)), replace=False)]
    scores, _ = faiss.knn(sample, vectors, 2, metric=faiss.METRIC_INNER_PRODUCT)  # column 0 is the vector itself
    distance = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * scores[:, 1:2]))  # |a - b| of unit vectors from a·b
    direction = rng.standard_normal(sample.shape).astype(np.float32)
    queries = sample + distance * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    return queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)


def tune_search_params(
    index: faiss.IndexIDMap,
    spec: IndexSpec,
    vectors: np.ndarray,
    ids: np.ndarray,
    target_recall: float = DEFAULT_RECALL_TARGET,
    k: int = 10,
    num_queries: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, int], float]:
    """Smallest ``efSearch``/``nprobe`` reaching ``target_recall`` at ``k``, and the recall it measured.

    The recall is measured against exact search for queries near the indexed
    vectors but not among them (see :func:`_tuning_queries`), like held-out
    images of the same collection. The chosen value is applied to ``index``.

    Args:
        index: a built HNSW or IVF index (flat indexes need no tuning: recall is 1).
        spec: its spec; ``spec.search`` is not modified.
        vectors: ``(N, D)`` the indexed vectors, aligned with ``ids``.
        ids: ``(N,)`` their ids.
        target_recall: recall@k to reach; if no candidate reaches it, the largest is used.
        k: neighbours per query.
        num_queries: number of tuning queries.
        seed: for the sample.
    """
    if spec.kind == "flat" or len(vectors) <= k:
        set_search_params(index, spec.search)
        return dict(spec.search), 1.0
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = _tuning_queries(vectors, num_queries, np.random.default_rng(seed))
    _, exact = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    truth = ids[exact]
    if spec.kind == "hnsw":
        name, candidates = "efSearch", [ef for ef in EF_SEARCH_CANDIDATES if ef >= k]
    else:
        nlist = spec.build["nlist"]
        name, candidates = "nprobe", [2**i for i in range(int(math.log2(nlist)) + 1)] + [nlist]
        candidates = sorted(set(candidates))
    recall = 0.0
    for value in candidates:
        set_search_params(index, {name: value})
        _, found = index.search(queries, k)
        recall = recall_at_k(found, truth)
        if recall >= target_recall:
            break
    return {name: value}, recall


def reconstruct(index: faiss.IndexIDMap, position: int) -> np.ndarray:
    """The ``(D,)`` vector stored at ``position`` (storage order, as in :func:`index_ids`)."""
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexIVF):
        inner.make_direct_map()
    return inner.reconstruct(int(position))
