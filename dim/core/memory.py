"""Datasets held in memory, and whether one fits.

:class:`ImageDataset` holds decoded images (uint8 ``(N, C, H, W)``) and their
int64 labels, so no epoch re-decodes a file. :func:`fits_in_memory` tells
whether decoded images of a given size can be held so, or have to stream from
their files instead (:class:`dim.core.files.ImageFiles`, decoded when read).
:func:`dim.core.datasets.load_dataset` returns an :class:`ImageDataset`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

_MEMORY_FRACTION = 0.5  # a folder is decoded into memory when it takes at most this share of the free RAM


class _Labelled:
    """``num_classes`` and ``is_labelled`` from ``classes``: the base of ImageDataset and dim.core.files.ImageFiles."""

    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_labelled(self) -> bool:
        return self.num_classes > 0


@dataclass(eq=False)
class ImageDataset(_Labelled, torch.utils.data.Dataset):
    """Decoded images and labels, all in memory.

    Attributes:
        images: uint8 ``(N, C, H, W)``.
        labels: int64 ``(N,)``, ``-1`` where unlabelled.
        classes: class names, index = label (``[]`` when unlabelled).
        name: ``"cifar10"``, ``"shapes"``, ... or the folder path.
        split: ``"train"``, ``"test"``, ``"unlabeled"`` or ``"all"`` (a whole folder).
        paths: file paths relative to the folder, row-aligned with ``images``
            (``None`` for datasets that do not come from files).
        skipped: ``(relative path, reason)`` of each file that could not be read.
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str
    split: str
    paths: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.images),):
            raise ValueError(
                f"labels must be int64 ({len(self.images)},), got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if self.paths is not None and len(self.paths) != len(self.images):
            raise ValueError(f"{len(self.paths)} paths for {len(self.images)} images")

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Returns ``(image, label)``: uint8 ``(C, H, W)`` and an int64 scalar."""
        return self.images[index], self.labels[index]


def available_memory() -> int:
    """Bytes of RAM available to new allocations (``MemAvailable`` on Linux, else the physical RAM)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def fits_in_memory(nbytes: int) -> bool:
    """Whether decoded images of ``nbytes`` fit comfortably: at most half the :func:`available_memory`."""
    return nbytes <= _MEMORY_FRACTION * available_memory()
