"""Faiss index choice, construction and search-parameter tuning for L2-normalised vectors.

All indexes use the inner product (cosine similarity on unit vectors), and every
vector carries a stable int64 id: ``flat``, ``hnsw`` and ``ivf`` are wrapped in
``IndexIDMap``; ``ivfpq`` keeps the ids in its own inverted lists (8 bytes a
vector instead of 16).

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

``ivfpq`` (``IndexIVFPQ``, on request) is the type for collections too large
for the raw vectors: the same lists as ``ivf``, and each vector stored as the
product-quantisation code of its residual from its list's centroid (Jégou et
al., "Product quantization for nearest neighbor search", TPAMI 2011): D is
split into ``M`` sub-vectors (the largest divisor of D not above
``PQ_MAX_SUBQUANTIZERS``), each replaced by the index of the nearest of
``2**nbits`` centroids learnt by k-means on that sub-space. A vector then takes
``M·nbits/8`` bytes of code plus its 8-byte id: 40 bytes for D = 64 at
``nbits`` = 8, against 4·D + 16 = 272 for ``ivf``. Scores are inner products
with the decoded vectors, so they, and every vector read back from the index
(:func:`stored_vectors`), are approximations: the exact vectors are not kept.
It is trained once on a sample and filled in parts that are merged
(:func:`build_index_in_parts`; :func:`train_index`, :func:`add_part` and
:func:`merge_parts` are the steps, for running the parts elsewhere).

The search parameter (``efSearch`` or ``nprobe``) is then the smallest value
whose measured recall@10 against exact search reaches the target (0.95) for
queries placed among the indexed vectors, see :func:`tune_search_params`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
from faiss.contrib.inspect_tools import get_invlist, get_invlist_sizes

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq")
FLAT_MAX_VECTORS = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
IVF_MIN_POINTS_PER_LIST = 39  # Faiss warns when k-means has fewer training points per centroid
IVF_TRAIN_POINTS_PER_LIST = 64  # k-means sample: 64·nlist vectors (Faiss' own cap is 256·nlist)
IVF_MAX_LISTS = 65_536
PQ_MAX_SUBQUANTIZERS = 32  # at 8 bits, a code of at most 32 bytes: 40 bytes a vector with its id
PQ_MAX_BITS = 8  # 256 centroids per sub-space, the size Faiss' fast PQ scanners are written for
PQ_RECALL_PLATEAU = 0.01  # ivfpq tuning stops when doubling nprobe gains less recall than this
EF_SEARCH_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
DEFAULT_RECALL_TARGET = 0.95


@dataclass
class IndexSpec:
    """Which Faiss index to build and how to search it.

    Attributes:
        kind: ``"flat"``, ``"hnsw"``, ``"ivf"`` or ``"ivfpq"``.
        build: construction parameters (``{"M", "efConstruction"}``, ``{"nlist"}`` or
            ``{"nlist", "M", "nbits"}``: sub-quantizers and bits per sub-quantizer code).
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


def pq_subquantizers(dim: int) -> int:
    """``M`` for a PQ code of ``dim``-d vectors: the largest divisor of ``dim`` not above ``PQ_MAX_SUBQUANTIZERS``.

    Sub-vectors must all have the same length ``dim / M``; a ``dim`` without a
    divisor near 32 gets fewer, longer sub-vectors (a prime ``dim`` above 32 gets one).
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return max(m for m in range(1, min(dim, PQ_MAX_SUBQUANTIZERS) + 1) if dim % m == 0)


def pq_bits(num_vectors: int) -> int:
    """``nbits`` for a PQ code: ``floor(log2(N / 39))``, clipped to [1, 8], so k-means has >= 39 points a centroid.

    Small collections get fewer centroids per sub-space rather than centroids
    trained on a handful of points; from 9,984 vectors on, the full 8 bits.
    """
    if num_vectors < 1:
        raise ValueError("a PQ index needs at least one vector to train its sub-quantizers")
    return max(1, min(PQ_MAX_BITS, math.floor(math.log2(num_vectors / IVF_MIN_POINTS_PER_LIST))))


def choose_index_spec(num_vectors: int, index_type: str = "auto", dim: int | None = None) -> IndexSpec:
    """The index to build for ``num_vectors`` vectors, with starting search parameters.

    Args:
        num_vectors: how many vectors the index will hold.
        index_type: ``"auto"`` applies the size rule of this module; ``"flat"``,
            ``"hnsw"``, ``"ivf"`` or ``"ivfpq"`` force a type (parameters still follow the size).
        dim: the vectors' dimension; needed for ``"ivfpq"`` (the number of sub-vectors divides it).

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
    search = {"nprobe": min(nlist, max(1, nlist // 64))}
    if index_type == "ivf":
        return IndexSpec("ivf", {"nlist": nlist}, search)
    if dim is None:
        raise ValueError("an ivfpq index splits vectors into sub-vectors: pass the vectors' dimension (dim)")
    return IndexSpec("ivfpq", {"nlist": nlist, "M": pq_subquantizers(dim), "nbits": pq_bits(num_vectors)}, search)


def create_index(spec: IndexSpec, dim: int) -> faiss.Index:
    """An empty (untrained for IVF) inner-product index with int64 ids."""
    if spec.kind == "ivfpq":  # the inverted lists hold the ids: no IndexIDMap
        quantizer = faiss.IndexFlatIP(dim)
        build = spec.build
        return faiss.IndexIVFPQ(quantizer, dim, build["nlist"], build["M"], build["nbits"], faiss.METRIC_INNER_PRODUCT)
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
    """The index that holds the vectors: the one inside an ``IndexIDMap`` (downcast), else ``index`` itself."""
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index


def set_search_params(index: faiss.Index, search: dict[str, int]) -> None:
    """Apply ``{"efSearch": ...}`` or ``{"nprobe": ...}`` to an index from :func:`create_index`."""
    inner = inner_index(index)
    if "efSearch" in search:
        inner.hnsw.efSearch = int(search["efSearch"])
    if "nprobe" in search:
        inner.nprobe = int(search["nprobe"])


def train_index(spec: IndexSpec, vectors: np.ndarray) -> faiss.Index:
    """An empty index of ``spec``, trained (IVF types) on a sample of ``vectors (N, D)``.

    The sample is ``64·max(nlist, 2**nbits)`` vectors drawn without replacement
    (seed 0), or all of them when there are fewer: k-means fits the coarse
    centroids to it, and for ``ivfpq`` the sub-quantizers to its residuals.
    Everything added later is assigned and encoded with what this sample taught.

    Raises:
        ValueError: if there are fewer vectors than centroids to train.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = create_index(spec, vectors.shape[1])
    if index.is_trained:
        return index
    centroids = max(spec.build["nlist"], 2 ** spec.build.get("nbits", 0))  # per k-means: lists, and per sub-space
    if len(vectors) < centroids:
        raise ValueError(
            f"an {spec.kind} index with {spec.build} trains {centroids} centroids and needs at least that many "
            f"vectors, got {len(vectors)}; choose the spec for this number of vectors (choose_index_spec)"
        )
    sample_size = IVF_TRAIN_POINTS_PER_LIST * centroids
    if len(vectors) > sample_size:
        sample = np.random.default_rng(0).choice(len(vectors), size=sample_size, replace=False)
        index.train(vectors[np.sort(sample)])
    else:
        index.train(vectors)
    return index


def build_index(spec: IndexSpec, vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    """Create, train (IVF types, :func:`train_index`) and fill an index with ``vectors (N, D)`` under ``ids (N,)``."""
    index = train_index(spec, vectors)
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    set_search_params(index, spec.search)
    return index


def add_part(trained: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    """A copy of the trained empty ``ivfpq`` index holding ``vectors (n, D)`` under ``ids (n,)``: one part's work.

    Needs nothing but the trained index, so a part can run in another process or
    on another machine (``faiss.write_index``/``faiss.read_index`` carry it there
    and the filled part back), as long as the ids of all parts are distinct.
    """
    if not isinstance(trained, faiss.IndexIVFPQ) or not trained.is_trained or trained.ntotal:
        raise ValueError("add_part takes the trained, empty ivfpq index that train_index returns")
    part = faiss.clone_index(trained)
    part.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return part


def merge_parts(parts: Sequence[faiss.Index]) -> faiss.Index:
    """One index holding every part, in the order given: the others' lists are moved into ``parts[0]``.

    Each inverted list of the result holds the list's entries of ``parts[0]``,
    then those of ``parts[1]``, ...: the index that adding the parts' vectors one
    after the other to the trained index would give, entry for entry. The parts
    after the first are left empty.

    Raises:
        ValueError: if there are no parts, or they were not filled from one trained index
            (the coarse and the sub-quantizer centroids must be the same).
    """
    if not parts or not all(isinstance(part, faiss.IndexIVFPQ) for part in parts):
        raise ValueError("merge_parts takes one or more ivfpq indexes filled by add_part")
    merged = parts[0]
    for part in parts[1:]:
        if not np.array_equal(_trained_state(part), _trained_state(merged)):
            raise ValueError("the parts were not filled from the same trained index: their centroids differ")
        merged.merge_from(part, 0)  # the ids stay as added: 0 is added to them
    return merged


def build_index_in_parts(
    spec: IndexSpec, vectors: np.ndarray, ids: np.ndarray, parts: int, workers: int | None = None
) -> faiss.Index:
    """An ``ivfpq`` index trained once on a sample, filled in ``parts`` slices added side by side, then merged.

    Faiss' recipe for indexes too large to build in one go: :func:`train_index`,
    then :func:`add_part` on each contiguous slice of ``vectors`` (in ``workers``
    threads; Faiss releases the GIL), then :func:`merge_parts` in slice order. The
    result equals :func:`build_index`'s, entry for entry. On one machine it is no
    faster (Faiss' own add already uses every core); the parts pay off when they
    run in separate processes or machines, each holding only its slice.

    Args:
        spec: an ``ivfpq`` spec (:func:`choose_index_spec`).
        vectors: ``(N, D)`` float32 unit vectors.
        ids: ``(N,)`` distinct int64 ids.
        parts: number of slices, from 1 to N.
        workers: threads adding parts at once (default: one per part, at most one per CPU core).
    """
    if spec.kind != "ivfpq":
        raise ValueError(f"only ivfpq indexes are built in parts (their lists carry the ids), got {spec.kind!r}")
    if not 1 <= parts <= max(1, len(vectors)):
        raise ValueError(f"parts must be between 1 and the number of vectors ({len(vectors)}), got {parts}")
    if len(ids) != len(vectors):
        raise ValueError(f"got {len(vectors)} vectors but {len(ids)} ids")
    trained = train_index(spec, vectors)
    bounds = np.linspace(0, len(vectors), parts + 1).astype(int)
    workers = workers or min(parts, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        filled = list(pool.map(
            lambda start, stop: add_part(trained, vectors[start:stop], ids[start:stop]), bounds[:-1], bounds[1:]
        ))
    index = merge_parts(filled)
    set_search_params(index, spec.search)
    return index


def _trained_state(index: faiss.IndexIVFPQ) -> np.ndarray:
    """Every centroid an ``ivfpq`` index learnt, flattened: the coarse ones, then the sub-quantizers'."""
    coarse = index.quantizer.reconstruct_n(0, index.nlist)  # (nlist, D)
    return np.concatenate([coarse.ravel(), faiss.vector_to_array(index.pq.centroids)])


def _inverted_lists(index: faiss.IndexIVF) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(list number, ids (n,), codes (n, code_size))`` of every non-empty inverted list, in list order."""
    for list_no in range(index.nlist):
        if index.invlists.list_size(list_no):
            yield (list_no, *get_invlist(index.invlists, list_no))


def index_ids(index: faiss.Index) -> np.ndarray:
    """``(ntotal,)`` int64 ids, in storage order (``ivfpq``: list by list)."""
    if isinstance(index, faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    found = [ids for _, ids, _ in _inverted_lists(index)]
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """``(ntotal, D)`` float32 vectors in storage order (aligned with :func:`index_ids`).

    Exact for ``flat``, ``hnsw`` and ``ivf``; for ``ivfpq`` the decoded codes
    (centroid plus decoded residual), which is what its search scores against.
    """
    inner = inner_index(index)
    if inner is index:  # ivfpq: decode each list's codes, prefixed with the list number (Faiss' standalone code)
        prefix_bytes = index.coarse_code_size()
        codes = [
            np.hstack([np.tile(_list_number_bytes(list_no, prefix_bytes), (len(list_codes), 1)), list_codes])
            for list_no, _, list_codes in _inverted_lists(index)
        ]
        if not codes:
            return np.zeros((0, index.d), dtype=np.float32)
        return index.sa_decode(np.vstack(codes))
    return inner.reconstruct_n(0, inner.ntotal)  # IVF: by its sequential internal ids, no direct map needed


def _list_number_bytes(list_no: int, size: int) -> np.ndarray:
    """``(size,)`` uint8: ``list_no`` little-endian, as Faiss prefixes a standalone IVF code."""
    return np.array([(list_no >> (8 * byte)) & 0xFF for byte in range(size)], dtype=np.uint8)


def reconstruct(index: faiss.Index, position: int) -> np.ndarray:
    """The ``(D,)`` vector stored at ``position`` (storage order, as in :func:`index_ids`)."""
    if not 0 <= position < index.ntotal:
        raise IndexError(f"position {position} is outside an index of {index.ntotal} vectors")
    inner = inner_index(index)
    if inner is not index:
        return inner.reconstruct_n(int(position), 1)[0]
    sizes = get_invlist_sizes(index.invlists)  # (nlist,)
    ends = np.cumsum(sizes)
    list_no = int(np.searchsorted(ends, position, side="right"))
    vector = np.empty(index.d, dtype=np.float32)
    index.reconstruct_from_offset(list_no, int(position - (ends[list_no] - sizes[list_no])), faiss.swig_ptr(vector))
    return vector


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
    index: faiss.Index,
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

    For ``ivfpq`` the PQ codes cap the recall whatever ``nprobe``, often below
    the target: the values are tried in doubling steps, and the search stops at
    the last value before a step that gains less than ``PQ_RECALL_PLATEAU``, so
    that an unreachable target does not end in a scan of every list.

    Args:
        index: a built HNSW or IVF index (flat indexes need no tuning: recall is 1).
        spec: its spec; ``spec.search`` is not modified.
        vectors: ``(N, D)`` the indexed vectors, aligned with ``ids``: the exact ones,
            for the recall to include the PQ error of ``ivfpq``.
        ids: ``(N,)`` their ids.
        target_recall: recall@k to reach; if no candidate reaches it, the largest
            (``ivfpq``: the plateau) is used.
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
    chosen, recall = candidates[0], 0.0
    for value in candidates:
        set_search_params(index, {name: value})
        _, found = index.search(queries, k)
        measured = recall_at_k(found, truth)
        plateau = value != candidates[0] and measured - recall < PQ_RECALL_PLATEAU
        if spec.kind == "ivfpq" and measured < target_recall and plateau:
            break
        chosen, recall = value, measured
        if recall >= target_recall:
            break
    set_search_params(index, {name: chosen})
    return {name: chosen}, recall
