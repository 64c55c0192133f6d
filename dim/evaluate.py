"""``dim eval``: kNN (and linear-probe) accuracy of a trained DIM encoder on its dataset.

The protocol itself (weighted kNN, the linear probe, the neighbour grid) is
:mod:`dim.core.probes`, shared with every model family.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dim.checkpoint import CHECKPOINT_KIND, extractor_from_checkpoint
from dim.core.checkpoint import load_checkpoint
from dim.core.data import load_dataset
from dim.core.device import select_device
from dim.core.probes import evaluate


def evaluate_checkpoint(
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    feature: str = "z",
    k: int = 200,
    temperature: float = 0.1,
    linear: bool = False,
    device: str = "auto",
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, Any]:
    """``dim eval``: judge a trained encoder on the test split of the dataset it was trained on.

    Args:
        path: a run directory or a ``checkpoint.pt``; the neighbour grid ``knn.png`` is written next to it.
        data_dir: dataset root (default: the one the run was trained with).
        feature: ``z``, ``fc`` or ``conv`` (see :func:`dim.checkpoint.load_encoder`).
        k: neighbours that vote (200 in the protocol).
        temperature: T of the vote weight ``exp(cos / T)`` (0.1 in the protocol).
        linear: also report a linear probe's top-1.
        device: where to run the encoder.
        batch_size: images per forward pass.
        progress: show progress while decoding image files.

    Returns:
        :func:`evaluate`'s summary plus ``feature``, ``dataset`` and ``num_classes``.

    Raises:
        ValueError: if the checkpoint is not a DIM one or the dataset is unlabelled.
    """
    checkpoint = load_checkpoint(path, kind=CHECKPOINT_KIND)
    extractor = extractor_from_checkpoint(checkpoint, feature, source=str(path)).to(select_device(device))
    config = checkpoint["config"]
    dataset, data_dir = config["dataset"], data_dir if data_dir is not None else config["data_dir"]
    size, channels = extractor.image_size, extractor.channels
    train = load_dataset(dataset, "train", data_dir, image_size=size, channels=channels, progress=progress)
    if not train.is_labelled:
        raise ValueError(f"{dataset} is unlabelled: kNN evaluation needs class labels (sub-folders per class)")
    test = load_dataset(dataset, "test", data_dir, image_size=size, channels=channels, progress=progress)
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    summary = evaluate(
        extractor, train.images, train.labels, test.images, test.labels, train.num_classes,
        k, temperature, linear, grid_path=run_dir / "knn.png", batch_size=batch_size,
    )
    return {**summary, "feature": feature, "dataset": dataset, "num_classes": train.num_classes}
