"""The toolkit's one way to embed a set of images: decode in DataLoader workers, forward in batches.

``dim embed``, ``dim eval``, ``infogan eval`` and ``dim-search build/add`` all
embed through :func:`embed_images`. Image files are streamed: workers decode
each file at the model's input size into a small uint8 tensor
(:class:`dim.core.files.ImageFiles`, the path training data takes too), so a
folder of any size embeds in constant memory. Images already in memory (an
:class:`dim.core.memory.ImageDataset`: torchvision's datasets, generated shapes)
are sliced into batches. The main process moves whole batches to the model's
device and runs the network; with ``normalize`` the rows are L2-normalised, so
inner products are cosine similarities. A file that cannot be decoded is
recorded with the reason and skipped; it never stops the run.

How the CPU cores are shared between decoding and the network is decided here
once, for every command (:func:`decoding_split`): every core gets a decoding
process and the network runs on one torch thread, or on the cores left over.
Decoding costs a photo several times what the network does, and a network on as
many threads as cores only fights the decoders for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from dim.core.features import FeatureExtractor
from dim.core.files import MAX_DECODING_WORKERS, ImageFiles, available_cores, collate_files
from dim.core.memory import ImageDataset


@dataclass
class Embeddings:
    """The result of :func:`embed_images`.

    Attributes:
        vectors: ``(N_ok, D)`` float32, one row per readable image (L2-normalised with ``normalize``).
        positions: ``(N_ok,)`` int64, the index into the input images of each row.
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


def embed_batch(model: FeatureExtractor, images: Tensor, normalize: bool = True) -> np.ndarray:
    """``(B, C, H, W)`` uint8 images -> ``(B, D)`` float32 vectors (L2-normalised with ``normalize``).

    Call inside :func:`eval_mode` (batch norm and dropout must be in eval mode).
    """
    features = model(images.to(model.device, non_blocking=True))  # (B, D)
    return l2_normalize(features) if normalize else features.float().cpu().numpy()


def decoding_split(num_workers: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """How to share ``cores`` CPU cores when embedding image files: ``(torch threads, decoding workers)``.

    Workers: ``num_workers`` if given, else one per core (at most
    :data:`~dim.core.files.MAX_DECODING_WORKERS`; none on a single core, where
    decoding in the main process saves the hand-over). Threads: the cores the
    workers leave, at least one; with no workers the network has every core.

    On two cores this is 1 thread and 2 workers, which measured fastest for
    500x375 JPEGs and for 32x32 PNGs alike against 2 threads and 1 worker, 2
    and 2, and 1 and 1 (``benchmarks/search_embed.py``; benchmarks/RESULTS.md).

    Args:
        num_workers: the decoding processes asked for (``None``: the rule above).
        cores: the cores to share (``None``: :func:`~dim.core.files.available_cores`).

    Raises:
        ValueError: for a negative ``num_workers``.
    """
    cores = available_cores() if cores is None else cores
    if num_workers is None:
        num_workers = 0 if cores <= 1 else min(MAX_DECODING_WORKERS, cores)
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0 (0: decode in the main process), got {num_workers}")
    return (cores if num_workers == 0 else max(1, cores - num_workers)), num_workers


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with torch's intra-op pool at ``threads`` threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _memory_batches(dataset: ImageDataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor, list[tuple[int, str]]]]:
    """An in-memory dataset in :func:`dim.core.files.collate_files`' batch layout (nothing is ever skipped)."""
    for start in range(0, len(dataset), batch_size):
        end = min(start + batch_size, len(dataset))
        yield torch.arange(start, end), dataset.images[start:end], []


def embed_images(
    model: FeatureExtractor,
    images: Sequence[str | os.PathLike] | ImageFiles | ImageDataset,
    batch_size: int = 256,
    num_workers: int | None = None,
    progress: bool = False,
    normalize: bool = True,
    threads: int | None = None,
) -> Embeddings:
    """Embed images, skipping (and reporting) the files that cannot be read.

    Args:
        model: the feature extractor; it runs on its own device, in eval mode (its
            previous mode is restored afterwards).
        images: image files, in the order the rows should come out, or an
            :class:`~dim.core.files.ImageFiles` of them (its size and decoding are
            used; make it at the model's input size), or an
            :class:`~dim.core.memory.ImageDataset` already in memory.
        batch_size: images per forward pass.
        num_workers: DataLoader decoding processes for files; ``None``: one per
            core (:func:`decoding_split`).
        progress: show a tqdm bar in images/s.
        normalize: L2-normalise every row (for cosine search); ``False`` keeps the raw features.
        threads: torch threads while embedding files (``None``: the cores the
            workers leave, :func:`decoding_split`); the previous count is restored
            afterwards. Images in memory run on torch's current threads.

    Returns:
        :class:`Embeddings` with the vectors of the readable images in input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    split_threads, workers = decoding_split(num_workers)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if isinstance(images, ImageDataset):
        batches: Iterable = _memory_batches(images, batch_size)
        threads = torch.get_num_threads() if threads is None else threads
    else:
        files = images if isinstance(images, ImageFiles) else ImageFiles(images, model.image_size, model.channels)
        batches = DataLoader(files, batch_size=batch_size, num_workers=workers, collate_fn=collate_files,
                             pin_memory=model.device.type == "cuda")
        threads = split_threads if threads is None else threads
    vectors, positions, skipped = [], [], []
    bar = tqdm(total=len(images), unit="img", desc="embedding", disable=not progress, smoothing=0.1)
    with bar, eval_mode(model), torch_threads(threads):
        for batch_positions, batch, batch_skipped in batches:
            if batch is not None:
                vectors.append(embed_batch(model, batch, normalize))
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
