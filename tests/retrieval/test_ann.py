"""Index choice by size and search-parameter tuning, on synthetic clustered vectors."""

from __future__ import annotations

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
