"""Judging any feature extractor: weighted kNN, a linear probe and neighbour grids.

The kNN protocol is that of Wu et al., *Unsupervised Feature Learning via
Non-Parametric Instance Discrimination* (CVPR 2018), as used by lightly:
features are L2-normalised, the k = 200 nearest training images by cosine
similarity vote for their class with weight ``exp(similarity / T)``, T = 0.1,
and the class with the largest total is the prediction. The nearest neighbour
search runs in faiss, or where faiss is not installed as the same exact search
by a float32 matrix product and top-k in torch (on CUDA when there is one). The
neighbour grid shows, in each row, a query followed by its 9 nearest neighbours
(see docs/evaluation.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import save_image

from dim.core.features import FeatureExtractor
from dim.core.grids import neighbour_grid
from dim.core.images import normalize_images

try:
    import faiss
except ImportError:  # e.g. a GPU machine without faiss-cpu: nearest_neighbours searches with torch
    faiss = None

# The kNN protocol (Wu et al., CVPR 2018): the k most cosine-similar memory images vote with weight exp(cos / T).
KNN_K = 200
KNN_TEMPERATURE = 0.1


@torch.inference_mode()
def extract_features(network: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Run a feature network over uint8 images in batches.

    Args:
        network: maps ``(B, C, H, W)`` float images in [-1, 1] to ``(B, F)``
            (a :class:`dim.core.features.FeatureExtractor` or a :class:`dim.models.FeatureHead`);
            used as it is, so put it in eval mode first.
        images: uint8 ``(N, C, H, W)`` on any device; batches are moved to the network's device.
        batch_size: images per forward pass.

    Returns:
        ``(N, F)`` float32 features on the CPU.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    device = next(network.parameters()).device
    chunks = [
        network(normalize_images(images[start : start + batch_size].to(device, non_blocking=True))).float().cpu()
        for start in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def nearest_neighbours(memory: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact cosine-similarity search with faiss (in torch where faiss is not installed).

    Args:
        memory: ``(N, D)`` features to search in.
        queries: ``(Q, D)`` features to search for.
        k: neighbours per query (at most N).

    Returns:
        ``similarities (Q, k)`` (descending) and ``indices (Q, k)`` into ``memory``.
    """
    if memory.dim() != 2 or queries.dim() != 2 or memory.shape[1] != queries.shape[1]:
        raise ValueError(f"memory (N, D) and queries (Q, D) must share D, got {tuple(memory.shape)} and {tuple(queries.shape)}")
    if not 1 <= k <= len(memory):
        raise ValueError(f"k must be between 1 and the memory size {len(memory)}, got {k}")
    if faiss is None:
        return _torch_nearest_neighbours(memory, queries, k)
    memory_np = F.normalize(memory.float(), dim=1).numpy()
    queries_np = F.normalize(queries.float(), dim=1).numpy()
    index = faiss.IndexFlatIP(memory_np.shape[1])
    index.add(memory_np)
    similarities, indices = index.search(queries_np, k)
    return torch.from_numpy(similarities), torch.from_numpy(indices).long()


def _torch_nearest_neighbours(memory: Tensor, queries: Tensor, k: int, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """:func:`nearest_neighbours` without faiss: float32 inner products and top-k, ``chunk`` queries at a time."""
    device = torch.device("cuda") if torch.cuda.is_available() else memory.device
    memory = F.normalize(memory.to(device).float(), dim=1)  # (N, D)
    queries = F.normalize(queries.to(device).float(), dim=1)  # (Q, D)
    found = [(block @ memory.T).topk(k, dim=1) for block in queries.split(chunk)]  # (q, k) each, descending
    return torch.cat([f.values for f in found]).cpu(), torch.cat([f.indices for f in found]).cpu()


@dataclass
class KNNResult:
    """Weighted kNN classification of the queries.

    Attributes:
        top1: accuracy in [0, 1].
        k: the number of neighbours that voted.
        predictions: ``(Q,)`` predicted classes.
        neighbours: ``(Q, k)`` indices of each query's neighbours in the memory, nearest first.
    """

    top1: float
    k: int
    predictions: Tensor
    neighbours: Tensor


def knn_classify(
    memory: Tensor,
    memory_labels: Tensor,
    queries: Tensor,
    query_labels: Tensor,
    num_classes: int,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
) -> KNNResult:
    """Weighted kNN top-1 accuracy (Wu et al., CVPR 2018).

    ``score[q, c] = sum over the k neighbours n of q with label c of exp(cos(q, n) / temperature)``;
    the prediction is ``argmax_c score[q, c]``. k is capped at the memory size.

    Shapes:
        memory ``(N, D)``, memory_labels ``(N,)`` in ``[0, num_classes)``,
        queries ``(Q, D)``, query_labels ``(Q,)``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if len(memory_labels) != len(memory) or len(query_labels) != len(queries):
        raise ValueError("features and labels must have the same number of rows")
    if memory_labels.min() < 0 or memory_labels.max() >= num_classes:
        raise ValueError(f"memory labels must lie in [0, {num_classes}); is the dataset labelled?")
    k = min(k, len(memory))
    similarities, neighbours = nearest_neighbours(memory, queries, k)  # (Q, k), (Q, k)
    weights = (similarities / temperature).exp()  # (Q, k)
    scores = torch.zeros(len(queries), num_classes).scatter_add_(1, memory_labels.cpu()[neighbours], weights)
    predictions = scores.argmax(dim=1)  # (Q,)
    top1 = (predictions == query_labels.cpu()).float().mean().item()
    return KNNResult(top1=top1, k=k, predictions=predictions, neighbours=neighbours)


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    steps: int = 200,
    weight_decay: float = 1e-4,
) -> float:
    """Top-1 accuracy of a logistic-regression classifier on frozen, standardised features.

    Fitted full-batch with L-BFGS (deterministic, no RNG drawn) on
    cross-entropy plus ``weight_decay * ||W||^2``. Shapes: features ``(N, D)``,
    labels ``(N,)``.
    """
    mean, std = train_features.mean(dim=0), train_features.std(dim=0).clamp_min(1e-6)
    train_x, test_x = (train_features - mean) / std, (test_features - mean) / std  # (N, D), (Q, D)
    classifier = nn.Linear(train_x.shape[1], num_classes)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.LBFGS(classifier.parameters(), max_iter=steps, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(classifier(train_x), train_labels) + weight_decay * classifier.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return (classifier(test_x).argmax(dim=1) == test_labels).float().mean().item()


def save_neighbour_grid(
    path: str | os.PathLike, queries: Tensor, memory: Tensor, neighbours: Tensor, num_neighbours: int = 9
) -> None:
    """Save a PNG whose rows are a query image followed by its nearest neighbours.

    Args:
        path: the PNG to write.
        queries: uint8 ``(Q, C, H, W)`` query images, one row each.
        memory: uint8 ``(N, C, H, W)`` images the neighbours index into.
        neighbours: ``(Q, >= num_neighbours)`` indices into ``memory``, nearest first.
        num_neighbours: neighbours shown per row.
    """
    rows = torch.cat([queries.cpu()[:, None], memory.cpu()[neighbours[:, :num_neighbours]]], dim=1)  # (Q, 1 + n, C, H, W)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(neighbour_grid(rows), str(path))


def grid_queries(labels: Tensor, rows: int = 10) -> Tensor:
    """Indices of the queries a neighbour grid shows: the first image of each class in turn.

    Test splits are often sorted by class, so the first ``rows`` images would all
    be of one class; cycling through the classes shows as many as there are rows.
    Unlabelled queries (label -1) are simply taken in order.
    """
    labels = labels.cpu()
    order = torch.argsort(labels, stable=True)  # (Q,) grouped by class, original order within a class
    grouped = labels[order]
    rank_in_class = torch.arange(len(order)) - torch.searchsorted(grouped, grouped)  # (Q,) 0, 1, ... per class
    return order[torch.argsort(rank_in_class, stable=True)][:rows]  # every class's first, then every second...


def judge_features(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    linear: bool = False,
) -> tuple[dict[str, Any], KNNResult]:
    """The protocol on features already extracted: kNN top-1 (and a linear probe's), train split as memory.

    Shapes:
        train_features ``(N, F)``, train_labels ``(N,)``, test_features ``(Q, F)``, test_labels ``(Q,)``.

    Returns:
        ``(summary, knn)``: the summary has ``knn_top1``, ``k``, ``temperature``,
        ``num_train``, ``num_test`` and, with ``linear``, ``linear_top1``; ``knn``
        is the :class:`KNNResult` (its neighbours index the training rows).
    """
    result = knn_classify(train_features, train_labels, test_features, test_labels, num_classes, k, temperature)
    summary: dict[str, Any] = {
        "knn_top1": result.top1,
        "k": result.k,
        "temperature": temperature,
        "num_train": len(train_features),
        "num_test": len(test_features),
    }
    if linear:
        summary["linear_top1"] = linear_probe(
            train_features, train_labels.cpu(), test_features, test_labels.cpu(), num_classes
        )
    return summary, result


def evaluate(
    extractor: FeatureExtractor,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    linear: bool = False,
    grid_path: str | os.PathLike | None = None,
    batch_size: int = 512,
) -> dict[str, Any]:
    """kNN (and optionally linear-probe) accuracy of a feature extractor on images in memory, train split as memory.

    :func:`judge_features` on the extracted features (a trainer's check on
    images it already holds; a saved run is judged by
    :func:`dim.core.evaluation.evaluate_knn`, which streams image files).

    Args:
        extractor: the features to judge (eval mode).
        train_images: uint8 ``(N, C, H, W)`` memory images.
        train_labels: ``(N,)`` labels of the memory images.
        test_images: uint8 ``(Q, C, H, W)`` query images.
        test_labels: ``(Q,)`` labels of the query images.
        num_classes: number of classes.
        k: neighbours that vote (:data:`KNN_K` in the protocol).
        temperature: T of the vote weight ``exp(cos / T)`` (:data:`KNN_TEMPERATURE` in the protocol).
        linear: also fit a linear probe on the training features.
        grid_path: where to save the neighbour grid of 10 queries (``None``: no grid), see :func:`grid_queries`.
        batch_size: images per forward pass.

    Returns:
        :func:`judge_features`' summary plus ``images_per_s`` of the feature extraction.
    """
    start = time.perf_counter()
    train_features = extract_features(extractor, train_images, batch_size)  # (N, F)
    test_features = extract_features(extractor, test_images, batch_size)  # (Q, F)
    seconds = time.perf_counter() - start
    summary, result = judge_features(train_features, train_labels, test_features, test_labels, num_classes, k,
                                     temperature, linear)
    summary["images_per_s"] = (len(train_images) + len(test_images)) / max(seconds, 1e-9)
    if grid_path is not None:
        shown = grid_queries(test_labels)
        save_neighbour_grid(grid_path, test_images[shown], train_images, result.neighbours[shown])
    return summary


def subset_indices(size: int, limit: int | None, seed: int = 0) -> Tensor:
    """A fixed random subset of ``range(size)`` with at most ``limit`` entries (all when ``limit`` is None)."""
    if limit is None or limit >= size:
        return torch.arange(size)
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
