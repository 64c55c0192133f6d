"""``dim embed``: features of a dataset split or an image folder, saved as ``.npy`` plus a CSV.

The CSV has lightly's ``embeddings.csv`` layout: a header
``filenames,embedding_0,...,embedding_{D-1},labels`` and one row per image,
in the order of the rows of the ``.npy`` array (labels are -1 where unknown).
Images go through the toolkit's one embedding path,
:func:`dim.core.embedding.embed_images`: files are streamed through decoding
workers, so a folder of any size embeds in flat memory.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dim.core.atomic import atomic_write, atomic_write_text
from dim.core.datasets import DATASET_NAMES, image_files, load_dataset
from dim.core.embedding import embed_images
from dim.core.features import FeatureExtractor
from dim.core.files import ImageFiles, list_image_folder
from dim.core.memory import ImageDataset
from dim.core.registry import load_feature_extractor


@dataclass
class EmbedResult:
    """Where ``dim embed`` wrote what.

    Attributes:
        features_path: the ``(N, D)`` float32 ``.npy`` file.
        csv_path: the CSV of filenames (and the same features and labels).
        count: N, the number of images embedded.
        feature_dim: D.
        skipped: files that could not be read (relative path, reason).
        images_per_s: throughput of decoding and feature extraction together.
    """

    features_path: Path
    csv_path: Path
    count: int
    feature_dim: int
    skipped: list[tuple[str, str]]
    images_per_s: float


def source_images(
    source: str | os.PathLike, split: str, data_dir: str | os.PathLike | None, extractor: FeatureExtractor,
    progress: bool = True,
) -> ImageFiles | ImageDataset:
    """The images to embed at the extractor's input size: a named dataset's ``split``, or a whole folder.

    A dataset stored as files and a folder (every image under it, recursively)
    come back as :class:`~dim.core.files.ImageFiles`, decoded while embedding;
    torchvision's datasets and ``shapes`` come back in memory.
    """
    size = {"image_size": extractor.image_size, "channels": extractor.channels}
    if str(source) not in DATASET_NAMES:
        return list_image_folder(source, **size)
    files = image_files(source, split, data_dir, **size)
    return files if files is not None else load_dataset(source, split, data_dir, progress=progress, **size)


def image_name(images: ImageFiles | ImageDataset, index: int) -> str:
    """A file's path relative to its folder, or ``<split>/<index>`` for an image without a file."""
    if isinstance(images, ImageFiles):
        return images.relative_path(index)
    return images.paths[index] if images.paths else f"{images.split}/{index:06d}"


def embed(
    run: str | os.PathLike,
    source: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    feature: str | None = None,
    batch_size: int = 512,
    num_workers: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> EmbedResult:
    """Embed a dataset split or an image folder with a trained model of any registered family.

    The run is loaded through the feature-loader registry
    (:mod:`dim.core.registry`): a DIM run gives the ``feature`` asked for, an
    InfoGAN run D's trunk, an O-GAN run its encoding E(x).

    Args:
        run: a run directory or its ``checkpoint.pt``.
        source: a dataset name or an image folder.
        out: the ``.npy`` file to write; the CSV goes next to it with the suffix ``.csv``.
        split: split of a named dataset.
        data_dir: root of the named datasets.
        feature: DIM runs: ``z`` (default), ``fc`` or ``conv``; refused for other kinds.
        batch_size: images per forward pass.
        num_workers: decoding processes for image files (``None``: one per core, see
            :func:`dim.core.embedding.decoding_split`).
        device: where to run the network.
        progress: show a progress bar.
    """
    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"--out must name a .npy file (the CSV is written next to it), got {out}")
    options: dict[str, Any] = {} if feature is None else {"feature": feature}
    extractor = load_feature_extractor(run, device, **options)
    images = source_images(source, split, data_dir, extractor, progress)
    start = time.perf_counter()
    embedded = embed_images(extractor, images, batch_size, num_workers, progress, normalize=False)
    images_per_s = len(embedded.vectors) / max(time.perf_counter() - start, 1e-9)
    features = embedded.vectors  # (N, D) float32

    def write_array(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, features)

    atomic_write(out, write_array)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["filenames", *(f"embedding_{i}" for i in range(features.shape[1])), "labels"])
    for position, row in zip(embedded.positions.tolist(), features.tolist()):
        writer.writerow([image_name(images, position), *row, int(images.labels[position])])
    csv_path = out.with_suffix(".csv")
    atomic_write_text(csv_path, table.getvalue())
    skipped = [(image_name(images, position), reason) for position, reason in embedded.skipped]
    if isinstance(images, ImageDataset):
        skipped = list(images.skipped) + skipped
    return EmbedResult(out, csv_path, len(features), features.shape[1], skipped, images_per_s)
