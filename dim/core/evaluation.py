"""Judging a saved run of any model family: weighted kNN (and a linear probe) on its own dataset.

``dim eval`` and ``infogan eval`` (for O-GAN's encoder) both come here: the
run's features are loaded through the feature-loader registry
(:mod:`dim.core.registry`), so a third model family is judged the same way
once it registers a loader. The dataset and its root are read off the run's
saved settings (``config["dataset"]``, ``config["data_dir"]``); its images are
embedded by :func:`dim.core.embedding.embed_images`, which streams image files
through decoding workers (memory stays flat for any folder size) and slices
datasets that are already in memory. The protocol itself is
:func:`dim.core.probes.judge_features` (Wu et al., CVPR 2018: k = 200, T = 0.1).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from dim.core.checkpoint import checkpoint_file, load_checkpoint
from dim.core.datasets import image_files, load_dataset
from dim.core.embedding import embed_images
from dim.core.features import FeatureExtractor
from dim.core.files import ImageFiles
from dim.core.memory import ImageDataset
from dim.core.probes import (
    KNN_K,
    KNN_TEMPERATURE,
    grid_queries,
    judge_features,
    save_neighbour_grid,
)
from dim.core.registry import load_feature_extractor

GRID_NEIGHBOURS = 9  # neighbours shown after each query in knn.png


def split_images(
    dataset: str, split: str, data_dir: str | os.PathLike | None, extractor: FeatureExtractor, progress: bool
) -> ImageFiles | ImageDataset:
    """One split of ``dataset`` at the extractor's input size: its files when it has them, else in memory."""
    size = {"image_size": extractor.image_size, "channels": extractor.channels}
    files = image_files(dataset, split, data_dir, **size)
    return files if files is not None else load_dataset(dataset, split, data_dir, progress=progress, **size)


def images_at(images: ImageFiles | ImageDataset, indices: Tensor) -> Tensor:
    """uint8 ``(len(indices), C, H, W)`` images at ``indices`` (files are decoded, only these)."""
    if isinstance(images, ImageDataset):
        return images.images[indices]
    return torch.stack([images[int(index)][1] for index in indices])


def evaluate_knn(
    run: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    *,
    device: str = "auto",
    batch_size: int = 512,
    linear: bool = False,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    num_workers: int | None = None,
    progress: bool = True,
    **loader_options: Any,
) -> dict[str, Any]:
    """Weighted kNN top-1 of a run's features on ``split`` of its dataset, the training split as memory.

    Writes the neighbour grid ``RUN/knn.png`` (10 queries, one per class in
    turn, each followed by its 9 nearest training images).

    Args:
        run: a run directory or its ``checkpoint.pt``, of any kind with a feature loader.
        data_dir: root of the named datasets (default: the one the run was trained with).
        split: the query split.
        device: where to run the network.
        batch_size: images per forward pass.
        linear: also report a linear probe's top-1.
        k: neighbours that vote.
        temperature: T of the vote weight ``exp(cos / T)``.
        num_workers: decoding processes for image files (``None``: one per core, see
            :func:`dim.core.embedding.decoding_split`).
        progress: show progress bars.
        **loader_options: passed to the kind's feature loader (e.g. ``feature="fc"`` for DIM).

    Returns:
        ``knn_top1``, ``k``, ``temperature``, ``num_train``, ``num_test``,
        ``linear_top1`` (with ``linear``), ``skipped`` (unreadable files),
        ``feature_dim``, ``features`` (the extractor's name), ``dataset``,
        ``split``, ``num_classes`` and ``knn_png``.

    Raises:
        ValueError: if the checkpoint has no feature loader, or a split is unlabelled.
    """
    file = checkpoint_file(run)
    config = load_checkpoint(file, kind=None, mmap=True)["config"]
    extractor = load_feature_extractor(file, device, **loader_options)
    dataset, root = config["dataset"], data_dir if data_dir is not None else config.get("data_dir")
    memory = split_images(dataset, "train", root, extractor, progress)
    queries = split_images(dataset, split, root, extractor, progress)
    for images in (memory, queries):
        if not images.is_labelled:
            raise ValueError(f"the {images.split!r} split of {dataset} is unlabelled: kNN accuracy needs a class for "
                             f"every image (sub-folders per class)")
    embed = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress, "normalize": False}
    train, test = embed_images(extractor, memory, **embed), embed_images(extractor, queries, **embed)
    train_positions, test_positions = torch.from_numpy(train.positions), torch.from_numpy(test.positions)
    test_labels = queries.labels[test_positions]
    summary, result = judge_features(
        torch.from_numpy(train.vectors), memory.labels[train_positions], torch.from_numpy(test.vectors), test_labels,
        memory.num_classes, k, temperature, linear,
    )
    shown = grid_queries(test_labels)  # (10,) rows of the readable queries
    neighbours = result.neighbours[shown, :GRID_NEIGHBOURS]  # (10, 9) rows of the readable memory images
    grid = file.parent / "knn.png"
    save_neighbour_grid(
        grid, images_at(queries, test_positions[shown]), images_at(memory, train_positions[neighbours.flatten()]),
        torch.arange(neighbours.numel()).view_as(neighbours), GRID_NEIGHBOURS,
    )
    return {
        **summary, "skipped": len(train.skipped) + len(test.skipped), "feature_dim": extractor.feature_dim,
        "features": extractor.name, "dataset": dataset, "split": split, "num_classes": memory.num_classes,
        "knn_png": str(grid),
    }
