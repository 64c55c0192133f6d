"""Named datasets, and :func:`load_dataset`, the one way to load any dataset by name or folder.

A source is a name from :data:`DATASET_NAMES` or the path of an image folder:

* a named dataset comes from an image-folder tree ``DATA_DIR/<name>/<split>/<class>/*``
  when there is one, else from torchvision's own files under ``DATA_DIR``
  (downloaded when allowed and online); ``DATA_DIR`` is :func:`resolve_data_dir`;
* ``shapes`` is generated from a seed (:mod:`dim.core.shapes`), needing no files
  and no network;
* any folder of images is read as :mod:`dim.core.files` describes.

:func:`load_dataset` decodes one split into an :class:`~dim.core.memory.ImageDataset`;
:func:`image_files` lists the files of one that lives in image files as
:class:`~dim.core.files.ImageFiles`, to stream when it does not fit in memory
(:func:`dim.core.memory.fits_in_memory`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dim.core.files import ImageFiles, list_folder_split, list_image_folder
from dim.core.memory import ImageDataset
from dim.core.shapes import SHAPE_CLASSES, make_shapes

DATASET_NAMES: tuple[str, ...] = ("cifar10", "cifar100", "stl10", "svhn", "mnist", "fashion-mnist", "shapes")
# name -> (native image size, native channels, the files torchvision reads under DATA_DIR)
_NATIVE: dict[str, tuple[int, int, str]] = {
    "cifar10": (32, 3, "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (the official python pickles)"),
    "cifar100": (32, 3, "cifar-100-python/{train,test,meta} (the official python pickles)"),
    "stl10": (96, 3, "stl10_binary/{train_X.bin,train_y.bin,test_X.bin,test_y.bin,unlabeled_X.bin,class_names.txt}"),
    "svhn": (32, 3, "{train_32x32.mat,test_32x32.mat} (directly in the data dir)"),
    "mnist": (28, 1, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (decompressed)"),
    "fashion-mnist": (28, 1, "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (decompressed)"),
    "shapes": (32, 3, ""),
}
_SHAPES_SPLITS = {"train": (20000, 0), "test": (2000, 1)}  # split -> (number of images, seed)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The dataset root: the argument if given, else ``$DIM_DATA_DIR``, else ``./data``."""
    chosen = data_dir if data_dir is not None else os.environ.get("DIM_DATA_DIR") or "data"
    return Path(chosen).expanduser()


def load_dataset(
    source: str | os.PathLike,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    download: bool = True,
    progress: bool = True,
) -> ImageDataset:
    """Load a named dataset or an image folder as uint8 tensors in memory.

    Args:
        source: a name from :data:`DATASET_NAMES` or the path of an image folder.
        split: ``"train"`` or ``"test"`` (``"unlabeled"`` too for ``stl10``). A folder
            with ``train/`` and ``test/`` sub-folders uses them; any other folder is
            split about 90/10 into train/test by a hash of each file's relative path.
        data_dir: root of the named datasets (default ``$DIM_DATA_DIR``, else ``./data``).
        image_size: output side length; default the dataset's own (MNIST 28, STL-10 96,
            others and folders 32).
        channels: 1 (grey) or 3 (RGB); default the dataset's own (MNIST 1, others 3).
        download: let torchvision download a named dataset that is missing.
        progress: show a progress bar while decoding image files.

    Returns:
        An :class:`~dim.core.memory.ImageDataset` with images ``(N, channels, image_size, image_size)``.

    Raises:
        ValueError: for an unknown name or split.
        FileNotFoundError: if a named dataset is neither on disk nor downloadable.
    """
    files = image_files(source, split, data_dir, image_size=image_size, channels=channels)
    if files is not None:
        return files.load(progress)
    name = str(source)
    native_size, native_channels, _ = _NATIVE[name]
    image_size, channels = image_size or native_size, channels or native_channels
    if name == "shapes":
        images, labels = _shapes_split(split, image_size)
        return ImageDataset(_convert(images.clone(), image_size, channels), labels.clone(), list(SHAPE_CLASSES),
                            name, split)
    images, labels, classes = _load_torchvision(name, split, resolve_data_dir(data_dir), download)
    return ImageDataset(_convert(images, image_size, channels), labels, classes, name, split)


def image_files(
    source: str | os.PathLike,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    channels: int | None = None,
) -> ImageFiles | None:
    """The files of one split of a dataset that lives in image files, as :class:`~dim.core.files.ImageFiles`.

    That is an image folder, or a named dataset stored as an image-folder tree
    ``DATA_DIR/<name>/<split>/<class>/*``; the arguments are those of
    :func:`load_dataset`, which decodes exactly these files.

    Returns:
        The files, or ``None`` for a dataset held in other files (torchvision's) or
        generated (``shapes``).

    Raises:
        ValueError: for an unknown name or split.
    """
    if source in DATASET_NAMES:
        name = str(source)
        native_size, native_channels, _ = _NATIVE[name]
        splits = ("train", "test", "unlabeled") if name == "stl10" else ("train", "test")
        if split not in splits:
            raise ValueError(f"{name} has no split {split!r}: use one of {', '.join(splits)}")
        tree = resolve_data_dir(data_dir) / name / split
        if name == "shapes" or not tree.is_dir():
            return None
        files = list_image_folder(tree, image_size or native_size, channels or native_channels)
        files.name, files.split = name, split
        return files
    if not Path(source).is_dir():
        raise ValueError(
            f"unknown dataset {str(source)!r}: use one of {', '.join(DATASET_NAMES)}, "
            "or the path of an existing folder of images"
        )
    return list_folder_split(source, split, image_size or 32, channels or 3)


@functools.lru_cache(maxsize=4)
def _shapes_split(split: str, image_size: int) -> tuple[Tensor, Tensor]:
    """A split of ``shapes``, generated once per process."""
    count, seed = _SHAPES_SPLITS[split]
    return make_shapes(count, image_size, seed)


def _load_torchvision(name: str, split: str, root: Path, download: bool) -> tuple[Tensor, Tensor, list[str]]:
    """uint8 ``(N, C, H, W)`` images, int64 labels and class names from torchvision's files."""
    from torchvision import (
        datasets,  # imported here: it adds seconds to every CLI start
    )

    train = split == "train"
    try:
        if name in ("mnist", "fashion-mnist"):
            kind = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
            source = kind(root, train=train, download=download)
            return source.data.unsqueeze(1), source.targets.long(), list(source.classes)
        if name in ("cifar10", "cifar100"):
            kind = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
            source = kind(root, train=train, download=download)
            images = torch.from_numpy(source.data).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
            return images, torch.tensor(source.targets, dtype=torch.int64), list(source.classes)
        if name == "stl10":
            source = datasets.STL10(root, split=split, download=download)
            classes = [] if split == "unlabeled" else list(source.classes)
            return torch.from_numpy(source.data), torch.from_numpy(source.labels.astype(np.int64)), classes
        source = datasets.SVHN(root, split=split, download=download)  # svhn: labels 0..9 are the digits
        digits = [str(d) for d in range(10)]
        return torch.from_numpy(source.data), torch.from_numpy(source.labels.astype(np.int64)), digits
    except (RuntimeError, OSError) as error:
        expected = _NATIVE[name][2]
        attempt = "downloading failed" if download else "downloading is disabled (download=False)"
        raise FileNotFoundError(
            f"{name} ({split} split) was not found in the data dir {root.resolve()} and {attempt}: "
            f"{type(error).__name__}: {error}\n"
            f"Put the files there in one of two layouts:\n"
            f"  torchvision's: {root / expected}\n"
            f"  an image folder: {root / name / split}/<class name>/<image files>\n"
            f"or point --data-dir / $DIM_DATA_DIR at the folder that holds them."
        ) from error


def _convert(images: Tensor, image_size: int, channels: int) -> Tensor:
    """Square uint8 ``(N, C, H, W)`` -> ``(N, channels, image_size, image_size)``, as ``image_to_uint8`` does.

    Grey <-> RGB first (PIL's integer luma formula for RGB -> grey), then an
    antialiased bicubic resize. Works in chunks to bound the float memory.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if images.shape[1] == channels and images.shape[-1] == image_size:
        return images
    out = torch.empty(len(images), channels, image_size, image_size, dtype=torch.uint8)
    luma = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)  # ITU-R 601-2 in 1/65536ths
    for start in range(0, len(images), 1024):
        chunk = images[start : start + 1024]
        if chunk.shape[1] == 3 and channels == 1:
            grey = (chunk.int() * luma).sum(1, keepdim=True) + 32768
            chunk = grey.div(65536, rounding_mode="floor").to(torch.uint8)
        elif chunk.shape[1] == 1 and channels == 3:
            chunk = chunk.expand(-1, 3, -1, -1)
        if chunk.shape[-1] != image_size:
            chunk = F.interpolate(chunk.float(), size=(image_size, image_size), mode="bicubic", antialias=True)
            chunk = chunk.round_().clamp_(0, 255).to(torch.uint8)
        out[start : start + 1024] = chunk
    return out
