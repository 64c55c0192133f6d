"""Weighted kNN, linear probe and neighbour grid on hand-made features."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dim.core import probes
from dim.core.probes import (
    grid_queries,
    knn_classify,
    linear_probe,
    nearest_neighbours,
    save_neighbour_grid,
    subset_indices,
)

# Memory: three unit-ish vectors (the first deliberately not normalised), labels 0, 1, 1.
MEMORY = torch.tensor([[5.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
MEMORY_LABELS = torch.tensor([0, 1, 1])
QUERIES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
QUERY_LABELS = torch.tensor([0, 1, 0])


def test_weighted_knn_matches_the_hand_computed_votes():
    # Cosine similarities of query 0: 1.0, 0.8, 0.0 -> class 0 gets e^10, class 1 gets e^8 + e^0: class 0.
    # Query 1: 0.0, 0.6, 1.0 -> class 1. Query 2: 0.6, 0.96, 0.8 -> class 1 (wrong, its label is 0).
    result = knn_classify(MEMORY, MEMORY_LABELS, QUERIES, QUERY_LABELS, num_classes=2, k=200, temperature=0.1)
    assert result.k == 3  # capped at the memory size
    assert result.predictions.tolist() == [0, 1, 1]
    assert result.top1 == pytest.approx(2 / 3)
    assert result.neighbours[2].tolist() == [1, 2, 0]


def test_a_high_temperature_turns_the_vote_into_a_majority_vote():
    result = knn_classify(MEMORY, MEMORY_LABELS, QUERIES, QUERY_LABELS, num_classes=2, k=3, temperature=100.0)
    assert result.predictions.tolist() == [1, 1, 1]
    assert result.top1 == pytest.approx(1 / 3)


def test_nearest_neighbours_returns_descending_cosine_similarities():
    similarities, indices = nearest_neighbours(MEMORY, QUERIES[:1], k=2)
    assert indices.tolist() == [[0, 1]]
    assert similarities[0].tolist() == pytest.approx([1.0, 0.8])


@pytest.mark.parametrize("use_faiss", [True, False], ids=["faiss", "torch"])
def test_both_searches_return_descending_cosine_similarities(monkeypatch, use_faiss):
    if use_faiss:
        pytest.importorskip("faiss")
    else:
        monkeypatch.setattr(probes, "faiss", None)  # as on a machine without faiss
    similarities, indices = nearest_neighbours(MEMORY, QUERIES, k=3)
    assert indices.tolist() == [[0, 1, 2], [2, 1, 0], [1, 2, 0]]
    # cos(q, m) by hand: q0 = (1, 0), q1 = (0, 1), q2 = (0.6, 0.8) against (1, 0), (0.8, 0.6), (0, 1)
    expected = [[1.0, 0.8, 0.0], [1.0, 0.6, 0.0], [0.96, 0.8, 0.6]]
    assert similarities.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]
    assert similarities.dtype == torch.float32 and indices.dtype == torch.int64


def test_the_torch_search_finds_what_faiss_finds(monkeypatch):
    pytest.importorskip("faiss")
    generator = torch.Generator().manual_seed(0)
    memory, queries = torch.randn(3000, 16, generator=generator), torch.randn(1500, 16, generator=generator)
    expected = nearest_neighbours(memory, queries, k=50)
    monkeypatch.setattr(probes, "faiss", None)
    found = nearest_neighbours(memory, queries, k=50)  # 1500 queries: more than one chunk of 1024
    assert torch.equal(found[1], expected[1])
    torch.testing.assert_close(found[0], expected[0], rtol=0, atol=1e-5)


def test_knn_rejects_unlabelled_memory():
    with pytest.raises(ValueError, match="labelled"):
        knn_classify(MEMORY, torch.tensor([0, -1, 1]), QUERIES, QUERY_LABELS, num_classes=2)


def test_linear_probe_separates_separable_features():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (300,), generator=generator)
    features = torch.randn(300, 8, generator=generator) * 0.1
    features[torch.arange(300), labels] += 2.0
    assert linear_probe(features[:200], labels[:200], features[200:], labels[200:], 3) == 1.0


def test_neighbour_grid_has_one_row_per_query(tmp_path):
    memory = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    neighbours = torch.arange(20).remainder(12).view(2, 10)
    save_neighbour_grid(tmp_path / "knn.png", memory[:2], memory, neighbours)
    with Image.open(tmp_path / "knn.png") as image:
        assert image.size == (2 + 10 * (8 + 2), 2 + 2 * (8 + 2))  # 10 columns: the query and 9 neighbours


def test_subset_indices_is_fixed_and_sorted():
    assert subset_indices(10, None).tolist() == list(range(10))
    first, second = subset_indices(100, 7, seed=3), subset_indices(100, 7, seed=3)
    assert torch.equal(first, second) and len(first) == 7 and torch.equal(first, first.sort().values)


def test_grid_queries_cycle_through_the_classes():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])  # sorted by class, as test splits often are
    assert grid_queries(labels, rows=5).tolist() == [0, 3, 5, 1, 4]
    assert grid_queries(torch.full((4,), -1), rows=3).tolist() == [0, 1, 2]
