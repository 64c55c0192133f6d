"""How well the categorical code captured the classes: Q's category for real test images.

Chen et al., *InfoGAN*, NeurIPS 2016, Section 7.1: on MNIST, c1 "captures
drastic change in shape" and, read off by Q, classifies digits with 5 % error
without having seen a label. Q's categories are numbered arbitrarily, so they
are matched one-to-one to the labels by the Hungarian algorithm on the
confusion matrix (the matching that maximises the number of agreements), and
the accuracy is counted under that matching.

An O-GAN run has no codes; its discriminator's encoding E(x) is judged as
features instead, by the weighted kNN top-1 of
:func:`dim.core.evaluation.evaluate_knn` (the training split as memory), the
protocol ``dim eval`` judges DIM by.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from dim.core.atomic import atomic_write_json
from dim.core.images import normalize_images
from dim.core.runs import TrainedRun
from infogan.checkpoint import load_run
from infogan.models import OGAN, InfoGAN


@torch.no_grad()
def predict_categories(model: InfoGAN, images: Tensor, batch_size: int = 500) -> Tensor:
    """Q's most likely value of ``c1`` for each uint8 ``(N, C, H, W)`` image -> int64 ``(N,)`` on the CPU.

    The model should be in eval mode (BatchNorm with its running statistics).
    """
    if not model.spec.categorical:
        raise ValueError("this model has no categorical code to read off")
    device = next(model.parameters()).device
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = normalize_images(images[start : start + batch_size].to(device))  # (b, C, H, W)
        predictions.append(model.recognize(batch).logits[0].argmax(dim=1).cpu())  # (b,)
    return torch.cat(predictions)


def confusion_matrix(labels: Tensor, predicted: Tensor, num_classes: int, num_categories: int) -> np.ndarray:
    """``(num_classes, num_categories)`` counts: row = true label, column = Q's category."""
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and predictions {tuple(predicted.shape)} differ in shape")
    confusion = np.zeros((num_classes, num_categories), dtype=np.int64)
    np.add.at(confusion, (labels.numpy(), predicted.numpy()), 1)
    return confusion


def match_categories(confusion: np.ndarray) -> tuple[dict[int, int], float]:
    """Hungarian matching of categories to classes on a ``(num_classes, num_categories)`` confusion matrix.

    Returns:
        ``(mapping, accuracy)``: ``mapping[category] = class`` for the matched
        categories (all of them when there are at least as many classes), and the
        fraction of images whose category maps to their class.
    """
    if confusion.ndim != 2 or confusion.sum() == 0:
        raise ValueError(f"need a non-empty 2-d confusion matrix, got {confusion.shape} with {confusion.sum()} counts")
    classes, categories = linear_sum_assignment(confusion, maximize=True)
    mapping = {int(category): int(label) for label, category in zip(classes, categories)}
    return mapping, float(confusion[classes, categories].sum() / confusion.sum())


def save_confusion_png(
    confusion: np.ndarray, classes: list[str], mapping: dict[int, int], path: str | os.PathLike, title: str = ""
) -> None:
    """Draw the confusion matrix as a PNG: rows are classes, columns Q's categories in matched order.

    Each cell is shaded by its share of the row and shows its count, so a good
    code reads as a dark diagonal.
    """
    num_classes, num_categories = confusion.shape
    by_class = {label: category for category, label in mapping.items()}
    order = [by_class[i] for i in range(num_classes) if i in by_class]
    order += [c for c in range(num_categories) if c not in order]  # unmatched categories last
    names = [str(name)[:14] for name in classes] or [str(i) for i in range(num_classes)]
    font = ImageFont.load_default()
    cell, left, top = 40, 8 + 7 * max(len(name) for name in names), 58
    image = Image.new("RGB", (left + cell * num_categories + 8, top + cell * num_classes + 8), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 4), title, fill="black", font=font)
    draw.text((left, 22), "columns: Q's category (c1), in matched order", fill="black", font=font)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    for column, category in enumerate(order):
        draw.text((left + column * cell + cell // 3, top - 14), str(category), fill="black", font=font)
    for row in range(num_classes):
        y = top + row * cell
        draw.text((4, y + cell // 3), names[row], fill="black", font=font)
        for column, category in enumerate(order):
            x, share = left + column * cell, float(shares[row, category])
            fill = (int(255 - 225 * share), int(255 - 175 * share), int(255 - 80 * share))
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=fill, outline=(200, 200, 200))
            ink = "white" if share > 0.5 else "black"
            draw.text((x + 4, y + cell // 3), str(confusion[row, category]), fill=ink, font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def evaluate(
    run: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    *,
    device: str = "auto",
    batch_size: int = 500,
    confusion_png: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Judge a trained run on a labelled split of its dataset, and save the result as ``RUN/eval_<split>.json``.

    An InfoGAN run is judged by the accuracy of its categorical code c1 under
    the Hungarian matching of categories to classes, and its confusion matrix
    is drawn (default ``RUN/confusion.png``). An O-GAN run is judged by the
    weighted kNN top-1 of its encoding E(x) (:func:`dim.core.evaluation.evaluate_knn`,
    the training split as memory), which draws ``RUN/knn.png``.

    Args:
        run: the run directory or its ``checkpoint.pt``.
        data_dir: root of the named datasets (default: the one the run was trained with).
        split: the split to score (``test`` as in the paper).
        device: where to run the networks (``auto``: CUDA, MPS, else CPU).
        batch_size: images per forward pass.
        confusion_png: InfoGAN runs: where to draw the confusion matrix.
        progress: show progress bars while decoding and embedding images.

    Returns:
        Always ``dataset``, ``split`` and ``iterations``. InfoGAN: ``cat_accuracy``
        (fraction in [0, 1]), ``mapping`` (category -> class index, keys as strings),
        ``classes``, ``confusion`` (rows = classes), ``num_images`` and ``confusion_png``.
        O-GAN: ``evaluate_knn``'s summary (``knn_top1``, ``k``, ``temperature``,
        ``num_train``, ``num_test``, ``images_per_s``, ``knn_png``, ...) and ``feature_dim``.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``run``.
        ValueError: if an InfoGAN run has no categorical code, or the splits have no labels.
    """
    trained = load_run(run, device)
    if isinstance(trained.model, OGAN):
        from dim.core.evaluation import (
            evaluate_knn,  # imported here: torchvision adds seconds to every CLI start
        )

        summary = evaluate_knn(trained.path, data_dir, split, device=device, batch_size=batch_size, progress=progress)
        result = {"dataset": trained.config.dataset, "split": split, "iterations": trained.step,
                  "feature_dim": trained.model.spec.noise_dim, **summary}
    else:
        result = _code_accuracy(trained, data_dir, split, batch_size, confusion_png, progress)
    atomic_write_json(trained.run_dir / f"eval_{split}.json", result)
    return result


def _code_accuracy(
    trained: TrainedRun,
    data_dir: str | os.PathLike | None,
    split: str,
    batch_size: int,
    confusion_png: str | os.PathLike | None,
    progress: bool,
) -> dict[str, Any]:
    """:func:`evaluate` of an InfoGAN run: c1's accuracy under the Hungarian matching, and ``confusion.png``."""
    from dim.core.datasets import (
        load_dataset,  # imported here: torchvision adds seconds to every CLI start
    )

    model, config = trained.model, trained.config
    if not model.spec.categorical:
        raise ValueError(f"{trained.path} has no categorical code; accuracy needs one (train with --categorical 10)")
    dataset = load_dataset(
        config.dataset, split, data_dir or config.data_dir,
        image_size=model.image_size, channels=model.channels, progress=progress,
    )
    labelled = dataset.labels >= 0
    if not dataset.is_labelled or not bool(labelled.any()):
        raise ValueError(f"the {split!r} split of {config.dataset} has no labels to match c1 against")
    labels = dataset.labels[labelled]
    predicted = predict_categories(model, dataset.images[labelled], batch_size)
    confusion = confusion_matrix(labels, predicted, dataset.num_classes, model.spec.categorical[0])
    mapping, accuracy = match_categories(confusion)

    png = Path(confusion_png) if confusion_png is not None else trained.run_dir / "confusion.png"
    title = f"{config.dataset} {split}: c1 accuracy {100 * accuracy:.2f}% after {trained.step} iterations"
    save_confusion_png(confusion, dataset.classes, mapping, png, title)
    return {
        "dataset": config.dataset,
        "split": split,
        "iterations": trained.step,
        "cat_accuracy": accuracy,
        "mapping": {str(category): label for category, label in sorted(mapping.items())},
        "classes": dataset.classes,
        "num_images": int(labels.numel()),
        "confusion": confusion.tolist(),
        "confusion_png": str(png),
    }
