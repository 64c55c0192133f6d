"""``dim eval``: kNN (and linear-probe) accuracy of a trained DIM encoder on its dataset.

The protocol (weighted kNN, the linear probe, the neighbour grid) and the path
that judges a saved run of any model family are :mod:`dim.core.probes` and
:mod:`dim.core.evaluation`; this module picks DIM's feature and writes the result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dim.checkpoint import KINDS
from dim.core.atomic import atomic_write_json
from dim.core.checkpoint import checkpoint_file, load_checkpoint
from dim.core.evaluation import evaluate_knn
from dim.core.probes import KNN_K, KNN_TEMPERATURE
from dim.models import check_feature


def evaluate(
    run: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    *,
    feature: str = "z",
    linear: bool = False,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    device: str = "auto",
    batch_size: int = 512,
    num_workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Judge a trained encoder on a labelled split of the dataset it was trained on, the training split as memory.

    Image files are streamed through decoding workers, so a folder of any size
    is judged in flat memory (:func:`dim.core.evaluation.evaluate_knn`). Writes
    the neighbour grid ``RUN/knn.png`` and the returned dict as
    ``RUN/eval_<split>.json``.

    Args:
        run: a run directory or its ``checkpoint.pt``.
        data_dir: dataset root (default: the one the run was trained with).
        split: the query split.
        feature: ``z``, ``fc`` or ``conv`` (see :func:`dim.checkpoint.load_features`).
        linear: also report a linear probe's top-1.
        k: neighbours that vote.
        temperature: T of the vote weight ``exp(cos / T)``.
        device: where to run the encoder.
        batch_size: images per forward pass.
        num_workers: decoding processes for image files (``None``: one per core, see
            :func:`dim.core.embedding.decoding_split`).
        progress: show progress bars.

    Returns:
        :func:`dim.core.evaluation.evaluate_knn`'s summary (``knn_top1``, ``k``,
        ``temperature``, ``num_train``, ``num_test``, ``linear_top1``, ``dataset``,
        ``split``, ``num_classes``, ...) plus ``feature`` and ``step``.

    Raises:
        ValueError: if the checkpoint is not a DIM one, ``feature`` is unknown or the dataset is unlabelled.
    """
    check_feature(feature)
    file = checkpoint_file(run)
    step = load_checkpoint(file, kind=KINDS, mmap=True)["step"]
    summary = evaluate_knn(file, data_dir, split, device=device, batch_size=batch_size, linear=linear, k=k,
                           temperature=temperature, num_workers=num_workers, progress=progress, feature=feature)
    result = {**summary, "feature": feature, "step": int(step)}
    atomic_write_json(Path(file).parent / f"eval_{split}.json", result)
    return result
