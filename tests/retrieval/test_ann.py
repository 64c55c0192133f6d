"""Index choice by size, search-parameter tuning and ivfpq built in parts, on synthetic clustered vectors."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from retrieval import ann


def clustered(num: int, dim: int = 32, centres: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors drawn around random centres (ANN recall is only meaningful on clustered data)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim))
    points = means[rng.integers(0, centres, num)] + spread * rng.standard_normal((num, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    ("num", "kind"),
    [(0, "flat"), (30, "flat"), (ann.FLAT_MAX_VECTORS, "flat"), (ann.FLAT_MAX_VECTORS + 1, "ivf"),
     (1_000_000, "ivf"), (50_000_000, "ivf")],
)
def test_auto_rule_by_size(num: int, kind: str) -> None:
    assert ann.choose_index_spec(num).kind == kind


def test_ivf_lists_follow_the_size() -> None:
    assert ann.choose_index_spec(4_000_000).build == {"nlist": 8192}  # 4·sqrt(4M) = 8000 -> 2^13
    assert ann.choose_index_spec(50_000_000, "ivf").build == {"nlist": 32768}
    assert ann.ivf_num_lists(10**12) == ann.IVF_MAX_LISTS
    assert ann.ivf_num_lists(100) == 2  # at least 39 training points per list
    assert ann.ivf_num_lists(10) == 1
    with pytest.raises(ValueError, match="at least one vector"):
        ann.ivf_num_lists(0)


def test_forced_types_and_errors() -> None:
    assert ann.choose_index_spec(10, "hnsw").build == {"M": ann.HNSW_M, "efConstruction": ann.HNSW_EF_CONSTRUCTION}
    assert ann.choose_index_spec(10**7, "flat").kind == "flat"
    with pytest.raises(ValueError, match="index_type must be one of"):
        ann.choose_index_spec(10, "lsh")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_tuning_reaches_the_recall_target(kind: str) -> None:
    vectors, queries = np.split(clustered(6200), [6000])  # held-out queries from the same mixture
    ids = np.arange(len(vectors), dtype=np.int64) * 7 + 3  # ids need not be positions
    spec = ann.choose_index_spec(len(vectors), kind)
    index = ann.build_index(spec, vectors, ids)
    search, recall = ann.tune_search_params(index, spec, vectors, ids, num_queries=300)
    assert recall >= ann.DEFAULT_RECALL_TARGET
    assert set(search) == ({"efSearch"} if kind == "hnsw" else {"nprobe"})

    _, exact = ann.build_index(ann.IndexSpec("flat"), vectors, ids).search(queries, 10)
    _, found = index.search(queries, 10)
    assert ann.recall_at_k(found, exact) >= 0.9  # held-out queries behave like the tuning sample


def test_stored_vectors_round_trip() -> None:
    vectors = clustered(500)
    ids = np.arange(500, dtype=np.int64)[::-1].copy()
    for kind in ("flat", "hnsw", "ivf"):
        index = ann.build_index(ann.choose_index_spec(500, kind), vectors, ids)
        order = np.argsort(ann.index_ids(index))
        np.testing.assert_allclose(ann.stored_vectors(index)[order], vectors[::-1], atol=1e-6)


def test_recall_at_k() -> None:
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    assert ann.recall_at_k(np.array([[3, 2, 1], [4, 9, 9]]), truth) == pytest.approx(4 / 6)


# ---------------------------------------------------------------------- ivfpq: product quantisation, built in parts


@pytest.fixture(scope="module")
def pq_data() -> tuple[ann.IndexSpec, np.ndarray, np.ndarray, np.ndarray]:
    """An ivfpq spec for 4,000 32-d vectors, the vectors, their ids and 200 held-out queries."""
    vectors, queries = np.split(clustered(4200, seed=1), [4000])
    ids = np.arange(len(vectors), dtype=np.int64) * 7 + 3  # ids need not be positions
    return ann.choose_index_spec(len(vectors), "ivfpq", dim=32), vectors, ids, queries


@pytest.fixture(scope="module")
def pq_trained(pq_data) -> faiss.Index:
    spec, vectors, _, _ = pq_data
    return ann.train_index(spec, vectors)


def test_ivfpq_spec_follows_the_size_and_the_dimension() -> None:
    # 4·sqrt(4,000) = 253 -> 256 lists, but at most 4,000 // 39 = 102; floor(log2(4,000 / 39)) = 6 bits
    assert ann.choose_index_spec(4000, "ivfpq", dim=32).build == {"nlist": 102, "M": 32, "nbits": 6}
    assert ann.choose_index_spec(10**6, "ivfpq", dim=64).build == {"nlist": 4096, "M": 32, "nbits": 8}
    assert [ann.pq_subquantizers(d) for d in (64, 32, 16, 100, 97)] == [32, 32, 16, 25, 1]
    assert [ann.pq_bits(n) for n in (1, 100, 9983, 9984, 10**9)] == [1, 1, 7, 8, 8]  # 9,984 = 39 · 256
    with pytest.raises(ValueError, match="dimension"):
        ann.choose_index_spec(10**6, "ivfpq")
    assert "ivfpq" in ann.INDEX_TYPES and ann.choose_index_spec(10**9).kind == "ivf"  # auto never picks it


def test_ivfpq_takes_40_bytes_a_vector_at_the_default() -> None:
    index = ann.create_index(ann.choose_index_spec(10**6, "ivfpq", dim=64), 64)
    assert not isinstance(index, faiss.IndexIDMap)  # its inverted lists carry the ids: 8 bytes, not 16
    assert index.code_size == 32  # 32 sub-vectors of 2 dimensions, one byte each


def test_parts_merge_into_the_index_built_in_one_go(pq_data, pq_trained) -> None:
    spec, vectors, ids, queries = pq_data
    whole = ann.add_part(pq_trained, vectors, ids)
    bounds = [0, 1000, 1001, 2500, 4000]  # uneven, one part of a single vector
    parts = [ann.add_part(pq_trained, vectors[a:b], ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    merged = ann.merge_parts(parts)
    assert merged.ntotal == len(vectors) and all(part.ntotal == 0 for part in parts[1:])
    assert pq_trained.ntotal == 0  # each part filled a copy
    np.testing.assert_array_equal(ann.index_ids(merged), ann.index_ids(whole))  # entry for entry
    np.testing.assert_array_equal(ann.stored_vectors(merged), ann.stored_vectors(whole))
    for index in (whole, merged):
        ann.set_search_params(index, {"nprobe": 8})
    for got, expected in zip(merged.search(queries, 10), whole.search(queries, 10)):
        np.testing.assert_array_equal(got, expected)


def test_build_index_in_parts_equals_build_index() -> None:
    vectors = clustered(1500, dim=16, seed=2)
    ids = np.arange(len(vectors), dtype=np.int64)[::-1].copy()
    spec = ann.choose_index_spec(len(vectors), "ivfpq", dim=16)
    in_parts = ann.build_index_in_parts(spec, vectors, ids, parts=3, workers=2)
    at_once = ann.build_index(spec, vectors, ids)
    assert inner_nprobe(in_parts) == inner_nprobe(at_once) == spec.search["nprobe"]
    np.testing.assert_array_equal(ann.index_ids(in_parts), ann.index_ids(at_once))
    np.testing.assert_array_equal(in_parts.search(vectors[:50], 5)[1], at_once.search(vectors[:50], 5)[1])


def inner_nprobe(index: faiss.Index) -> int:
    return ann.inner_index(index).nprobe


def test_ivfpq_recall_against_exact_search(pq_data, pq_trained) -> None:
    spec, vectors, ids, queries = pq_data
    index = ann.add_part(pq_trained, vectors, ids)
    search, tuned = ann.tune_search_params(index, spec, vectors, ids, num_queries=300)
    _, exact = ann.build_index(ann.IndexSpec("flat"), vectors, ids).search(queries, 10)
    _, found = index.search(queries, 10)
    assert search["nprobe"] < spec.build["nlist"]
    assert tuned >= 0.85 and ann.recall_at_k(found, exact) >= 0.85  # 0.92 measured: PQ codes of 24 bytes


def test_ivfpq_tuning_stops_where_recall_stops_rising(pq_data, pq_trained) -> None:
    spec, vectors, ids, _ = pq_data
    index = ann.add_part(pq_trained, vectors, ids)
    search, recall = ann.tune_search_params(index, spec, vectors, ids, target_recall=1.01, num_queries=300)
    # The rule by hand, on the same tuning queries: the next doubling gains less than the plateau.
    queries = ann._tuning_queries(vectors, 300, np.random.default_rng(0))
    truth = ids[faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]]
    measured = {}
    for nprobe in (search["nprobe"], 2 * search["nprobe"]):
        ann.set_search_params(index, {"nprobe": nprobe})
        measured[nprobe] = ann.recall_at_k(index.search(queries, 10)[1], truth)
    assert measured[search["nprobe"]] == pytest.approx(recall)
    assert measured[2 * search["nprobe"]] - recall < ann.PQ_RECALL_PLATEAU
    assert search["nprobe"] < spec.build["nlist"]  # not a scan of every list


def test_ivfpq_vectors_read_back_are_the_decoded_codes(pq_data, pq_trained) -> None:
    _, vectors, ids, _ = pq_data
    index = ann.add_part(pq_trained, vectors, ids)
    stored, stored_ids = ann.stored_vectors(index), ann.index_ids(index)
    assert sorted(stored_ids) == sorted(ids)
    exact = vectors[(stored_ids - 3) // 7]  # ids were 7·position + 3
    error = ((stored - exact) ** 2).sum(axis=1)
    assert 0 < error.mean() < 0.01  # approximate, close: unit vectors, squared error 3e-4 measured
    for position in (0, 1234, len(vectors) - 1):
        np.testing.assert_array_equal(ann.reconstruct(index, position), stored[position])
    position = {int(image_id): p for p, image_id in enumerate(stored_ids)}
    scores, found = index.search(exact[:20], 1)  # a search scores against the decoded vectors
    decoded = stored[[position[image_id] for image_id in found[:, 0]]]  # (20, D)
    np.testing.assert_allclose(scores[:, 0], np.einsum("nd,nd->n", exact[:20], decoded), atol=1e-5)


def test_parts_refuse_what_cannot_merge(pq_data, pq_trained) -> None:
    spec, vectors, ids, _ = pq_data
    with pytest.raises(ValueError, match="only ivfpq"):
        ann.build_index_in_parts(ann.choose_index_spec(len(vectors), "ivf"), vectors, ids, parts=2)
    with pytest.raises(ValueError, match="parts must be between 1"):
        ann.build_index_in_parts(spec, vectors, ids, parts=0)
    filled = ann.add_part(pq_trained, vectors[:10], ids[:10])
    with pytest.raises(ValueError, match="trained, empty ivfpq"):
        ann.add_part(filled, vectors[10:20], ids[10:20])
    other = faiss.clone_index(pq_trained)  # the same shapes, other coarse centroids
    centroids = other.quantizer.reconstruct_n(0, other.nlist)
    other.quantizer.reset()
    other.quantizer.add(centroids[::-1].copy())
    with pytest.raises(ValueError, match="same trained index"):
        ann.merge_parts([filled, ann.add_part(other, vectors[10:20], ids[10:20])])
    with pytest.raises(ValueError, match="one or more ivfpq"):
        ann.merge_parts([])
    with pytest.raises(ValueError, match="needs at least that many"):
        ann.train_index(spec, vectors[:50])


def test_ivfpq_on_a_handful_of_vectors() -> None:
    vectors = clustered(40)
    ids = np.arange(40, dtype=np.int64) + 100
    spec = ann.choose_index_spec(40, "ivfpq", dim=32)
    assert spec.build == {"nlist": 1, "M": 32, "nbits": 1}  # one list: its codes carry no list number
    index = ann.build_index(spec, vectors, ids)
    stored = ann.stored_vectors(index)
    assert stored.shape == (40, 32) and sorted(ann.index_ids(index)) == list(ids)
    np.testing.assert_array_equal(ann.reconstruct(index, 39), stored[39])
    with pytest.raises(IndexError, match="outside an index of 40"):
        ann.reconstruct(index, 40)
