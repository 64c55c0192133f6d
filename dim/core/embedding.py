"""Embed image files with a feature extractor: decode in DataLoader workers, forward in batches.

Workers decode each file at the model's input size into a small uint8 tensor
(:class:`dim.core.data.ImageFiles`, the path training data takes too); the main process moves whole batches to the model's device, runs the
network and L2-normalises, so inner products of the vectors are cosine
similarities. A file that cannot be decoded is recorded with the reason and
skipped; it never stops the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from dim.core.data import ImageFiles, collate_files, default_num_workers
from dim.core.features import FeatureExtractor


@dataclass
class Embeddings:
    """The result of :func:`embed_paths`.

    Attributes:
        vectors: ``(N_ok, D)`` float32, L2-normalised, one row per readable file.
        positions: ``(N_ok,)`` int64, the index into the input path list of each row.
        skipped: ``(position, reason)`` for every file that could not be read.
    """

    vectors: np.ndarray
    positions: np.ndarray
    skipped: list[tuple[int, str]]


def l2_normalize(features: Tensor) -> np.ndarray:
    """``(B, D)`` features -> ``(B, D)`` float32 numpy rows of unit length (zero rows stay zero)."""
    return F.normalize(features.float(), dim=1).cpu().numpy().astype(np.float32, copy=False)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode and no autograd, then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def embed_batch(model: FeatureExtractor, images: Tensor) -> np.ndarray:
    """``(B, C, H, W)`` uint8 images -> ``(B, D)`` L2-normalised float32 vectors.

    Call inside :func:`eval_mode` (batch norm and dropout must be in eval mode).
    """
    return l2_normalize(model(images.to(model.device, non_blocking=True)))


def embed_paths(
    model: FeatureExtractor,
    paths: Sequence[Path] | ImageFiles,
    batch_size: int = 256,
    num_workers: int | None = None,
    progress: bool = False,
) -> Embeddings:
    """Embed image files, skipping (and reporting) the ones that cannot be read.

    Args:
        model: the feature extractor; it runs on its own device, in eval mode (its
            previous mode is restored afterwards).
        paths: the files, in the order the rows should come out, or an
            :class:`~dim.core.data.ImageFiles` of them at the model's input size
            (its own decoding is then used).
        batch_size: images per forward pass.
        num_workers: DataLoader decoding processes; ``None`` picks :func:`default_num_workers`.
        progress: show a tqdm bar in images/s.

    Returns:
        :class:`Embeddings` with the vectors of the readable files in input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    workers = default_num_workers() if num_workers is None else num_workers
    if workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {workers}")
    files = paths if isinstance(paths, ImageFiles) else ImageFiles(paths, model.image_size, model.channels)
    loader = DataLoader(
        files,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_files,
        pin_memory=model.device.type == "cuda",
    )
    vectors, positions, skipped = [], [], []
    bar = tqdm(total=len(paths), unit="img", desc="embedding", disable=not progress, smoothing=0.1)
    with bar, eval_mode(model):
        for batch_positions, images, batch_skipped in loader:
            if images is not None:
                vectors.append(embed_batch(model, images))
                positions.append(batch_positions.numpy())
            skipped.extend(batch_skipped)
            bar.update(len(batch_positions) + len(batch_skipped))
            if skipped:
                bar.set_postfix(skipped=len(skipped), refresh=False)
    return Embeddings(
        vectors=np.concatenate(vectors) if vectors else np.zeros((0, model.feature_dim), np.float32),
        positions=np.concatenate(positions) if positions else np.zeros(0, np.int64),
        skipped=skipped,
    )
