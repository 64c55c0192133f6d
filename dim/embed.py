"""``dim embed``: features of a dataset split or an image folder, saved as ``.npy`` plus a CSV.

The CSV has lightly's ``embeddings.csv`` layout: a header
``filenames,embedding_0,...,embedding_{D-1},labels`` and one row per image,
in the order of the rows of the ``.npy`` array (labels are -1 where unknown).
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dim.checkpoint import CHECKPOINT_KIND, load_encoder
from dim.core.data import DATASET_NAMES, ImageDataset, load_dataset, load_image_folder
from dim.core.device import select_device
from dim.core.probes import extract_features
from dim.core.registry import checkpoint_kind, load_feature_extractor


@dataclass
class EmbedResult:
    """Where ``dim embed`` wrote what.

    Attributes:
        features_path: the ``(N, D)`` float32 ``.npy`` file.
        csv_path: the CSV of filenames (and the same features and labels).
        count: N, the number of images embedded.
        feature_dim: D.
        skipped: files that could not be read (relative path, reason).
        images_per_s: throughput of the feature extraction alone.
    """

    features_path: Path
    csv_path: Path
    count: int
    feature_dim: int
    skipped: list[tuple[str, str]]
    images_per_s: float


def load_source(
    source: str | os.PathLike, split: str, data_dir: str | os.PathLike | None, image_size: int, channels: int,
    progress: bool = True,
) -> tuple[ImageDataset, list[str]]:
    """The images to embed and a filename for each.

    A named dataset gives its ``split``; a folder is embedded whole (every image
    under it, recursively). Images without a file get ``<split>/<index>`` names.
    """
    if str(source) in DATASET_NAMES:
        dataset = load_dataset(source, split, data_dir, image_size=image_size, channels=channels, progress=progress)
    else:
        dataset = load_image_folder(source, image_size, channels, progress)
    names = dataset.paths or [f"{dataset.split}/{index:06d}" for index in range(len(dataset))]
    return dataset, names


def embed(
    checkpoint: str | os.PathLike,
    source: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    feature: str = "z",
    batch_size: int = 512,
    device: str = "auto",
    progress: bool = True,
) -> EmbedResult:
    """Embed a dataset split or an image folder with a trained model.

    A DIM run gives the ``feature`` asked for; a checkpoint of any other kind
    (InfoGAN, O-GAN, a third model family) is loaded through the feature-loader
    registry (:mod:`dim.core.registry`) and gives the features its loader defines.

    Args:
        checkpoint: a run directory or its ``checkpoint.pt``.
        source: a dataset name or an image folder.
        out: the ``.npy`` file to write; the CSV goes next to it with the suffix ``.csv``.
        split: split of a named dataset.
        data_dir: root of the named datasets.
        feature: ``z``, ``fc`` or ``conv`` (DIM runs; other kinds take the default ``z``).
        batch_size: images per forward pass.
        device: where to run the encoder.
        progress: show progress while decoding image files.
    """
    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"--out must name a .npy file (the CSV is written next to it), got {out}")
    kind = checkpoint_kind(checkpoint)
    if kind == CHECKPOINT_KIND:
        extractor = load_encoder(checkpoint, feature, device=select_device(device))
    elif feature != "z":
        raise ValueError(f"--feature {feature} picks a DIM encoder's features; {checkpoint} is a {kind!r} "
                         f"checkpoint, whose loader gives one kind of feature: leave --feature out")
    else:
        extractor = load_feature_extractor(checkpoint, device=device)
    dataset, names = load_source(source, split, data_dir, extractor.image_size, extractor.channels, progress)
    start = time.perf_counter()
    features = extract_features(extractor, dataset.images, batch_size).numpy()  # (N, D) float32
    images_per_s = len(features) / max(time.perf_counter() - start, 1e-9)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, features)
    csv_path = out.with_suffix(".csv")
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filenames", *(f"embedding_{i}" for i in range(features.shape[1])), "labels"])
        for name, row, label in zip(names, features.tolist(), dataset.labels.tolist()):
            writer.writerow([name, *row, label])
    return EmbedResult(out, csv_path, len(features), features.shape[1], dataset.skipped, images_per_s)
