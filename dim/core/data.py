"""Datasets: named benchmarks, image folders and generated shapes, in memory or streamed from disk.

A dataset is usually decoded once into an :class:`ImageDataset` (uint8
``(N, C, H, W)`` images plus int64 labels) and kept in memory, so no epoch
re-decodes a JPEG. A folder too large for memory stays an :class:`ImageFiles`
(the file list and labels) whose images are decoded when read, in
``torch.utils.data.DataLoader`` workers; :func:`image_files` lists one and
:func:`fits_in_memory` tells which of the two a folder needs.

* Named datasets (:data:`DATASET_NAMES`) come from an image-folder tree
  ``DATA_DIR/<name>/<split>/<class>/*`` when there is one, else from torchvision's
  own files under ``DATA_DIR`` (downloaded when allowed and online).
* Any folder of images: labelled by its first-level sub-folders, or unlabelled
  when some images lie directly in it. Unreadable files are skipped and recorded.
  Decoded folders are cached on disk (``$DIM_CACHE_DIR``, default
  ``~/.cache/dim-toolkit``), so the second load is fast.
* ``shapes``: coloured circles, squares and triangles generated from a seed,
  needing no files and no network.

Every image decoded from a file goes through :func:`dim.core.images.load_image`,
as embedding and search do, so training and inference see the same pixels.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from dim.core.atomic import atomic_save
from dim.core.images import DECODE_ERRORS, describe_error, load_image

logger = logging.getLogger(__name__)

DATASET_NAMES: tuple[str, ...] = ("cifar10", "cifar100", "stl10", "svhn", "mnist", "fashion-mnist", "shapes")
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

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
_SHAPE_CLASSES = ["circle", "square", "triangle"]
_DECODE_THREADS = min(16, 2 * (os.cpu_count() or 1))
_CACHE_VERSION = 2  # 2: JPEGs decoded at reduced scale, EXIF orientation, alpha on white
_MEMORY_FRACTION = 0.5  # a folder is decoded into memory when it takes at most this share of the free RAM


class _Labelled:
    """The class-name properties every dataset of this module derives from its ``classes``."""

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


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The dataset root: the argument if given, else ``$DIM_DATA_DIR``, else ``./data``."""
    chosen = data_dir if data_dir is not None else os.environ.get("DIM_DATA_DIR") or "data"
    return Path(chosen).expanduser()


def find_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root``, recursively, sorted.

    Files are recognised by extension (:data:`IMAGE_EXTENSIONS`, any case); hidden
    files and folders (names starting with ``.``) are ignored.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    found = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(folder) / name)
    return sorted(found)


class ImageFiles(_Labelled, torch.utils.data.Dataset):
    """Image files decoded when read: the streaming counterpart of :class:`ImageDataset`.

    Item ``i`` is ``(i, image, None)`` with the uint8 ``(channels, image_size,
    image_size)`` image of file ``i`` (:func:`dim.core.images.load_image`), or
    ``(i, None, reason)`` when the file cannot be read; :func:`collate_files`
    batches them. The file names are kept in one numpy byte array, so
    DataLoader worker processes share them instead of copying (touching Python
    strings would unshare their pages).

    Args:
        files: the image files.
        image_size: side of the decoded square images.
        channels: 1 (grey) or 3 (RGB).
        labels: int64 ``(N,)``, ``-1`` where unlabelled (default: all ``-1``).
        classes: class names, index = label.
        name: the dataset's name (the folder path for a folder).
        split: as :attr:`ImageDataset.split`.
        root: the folder the files lie under, for relative names and the decode cache.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        image_size: int = 32,
        channels: int = 3,
        labels: Tensor | None = None,
        classes: Sequence[str] = (),
        name: str = "",
        split: str = "all",
        root: str | os.PathLike | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self._files = np.array([os.fsencode(os.fspath(path)) for path in files], dtype=np.bytes_)  # (N,)
        self.labels = torch.full((len(self._files),), -1, dtype=torch.int64) if labels is None else labels
        if self.labels.shape != (len(self._files),):
            raise ValueError(f"{len(self.labels)} labels for {len(self._files)} files")
        self.image_size, self.channels = image_size, channels
        self.classes, self.name, self.split = list(classes), name, split
        self.root = None if root is None else Path(root)

    def __len__(self) -> int:
        return len(self._files)

    def path(self, index: int) -> Path:
        return Path(os.fsdecode(self._files[index]))

    def relative_path(self, index: int) -> str:
        """File ``index`` relative to :attr:`root` (posix), or its full path without a root."""
        path = self.path(index)
        return path.relative_to(self.root).as_posix() if self.root is not None else str(path)

    @property
    def nbytes(self) -> int:
        """The bytes :meth:`load` would hold: ``N * channels * image_size**2``."""
        return len(self) * self.channels * self.image_size**2

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, str | None]:
        try:
            return index, load_image(self.path(index), self.image_size, self.channels), None
        except DECODE_ERRORS as error:
            return index, None, describe_error(error)

    def subset(self, indices: Sequence[int] | Tensor) -> ImageFiles:
        """The files at ``indices``, in that order, with their labels."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        picked = copy.copy(self)  # the byte array indexed: no name is decoded and encoded again
        picked._files, picked.labels = self._files[indices.numpy()], self.labels[indices]
        return picked

    def load(self, progress: bool = True, cache: bool = True) -> ImageDataset:
        """Decode every file into an :class:`ImageDataset` in memory, skipping the unreadable ones.

        Decoding runs in a thread pool (Pillow releases the GIL); with ``cache`` and
        a :attr:`root` the result is cached on disk (see the module docstring).
        Unreadable files are recorded in ``.skipped`` and summarised in one warning.

        Raises:
            ValueError: if there are no files, or none of them can be read.
        """
        where = self.root or self.name or "the file list"
        if not len(self):
            raise ValueError(
                f"no images found in {where} (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}; "
                "hidden files and folders are ignored)"
            )
        cache_file = _cache_file(self) if cache and self.root is not None else None
        cached = _read_cache(cache_file) if cache_file is not None else None
        if cached is None:
            images, kept, skipped = _decode_files(self, progress)
            cached = {"images": images, "labels": self.labels[torch.tensor(kept, dtype=torch.int64)],
                      "paths": [self.relative_path(i) for i in kept], "skipped": skipped}
            if cache_file is not None:
                _write_cache(cache_file, cached)
        skipped = [tuple(item) for item in cached["skipped"]]
        if skipped:
            path, reason = skipped[0]
            logger.warning(
                f"{where}: skipped {len(skipped)} of {len(self)} image files that could not be read "
                f"(first: {path}: {reason}); the full list is in the dataset's .skipped"
            )
            if not cached["paths"]:
                raise ValueError(f"none of the {len(self)} image files in {where} could be read "
                                 f"(first: {path}: {reason})")
        return ImageDataset(cached["images"], cached["labels"], list(self.classes), self.name, self.split,
                            list(cached["paths"]), skipped)


def collate_files(
    items: list[tuple[int, Tensor | None, str | None]],
) -> tuple[Tensor, Tensor | None, list[tuple[int, str]]]:
    """Batch :class:`ImageFiles` items: ``(indices (B_ok,), images (B_ok, C, H, W) or None, skipped)``.

    ``skipped`` holds ``(index, reason)`` of each unreadable file; ``images`` is
    ``None`` when no file of the batch could be read.
    """
    good = [(index, image) for index, image, _ in items if image is not None]
    skipped = [(index, reason) for index, image, reason in items if image is None]
    indices = torch.tensor([index for index, _ in good], dtype=torch.int64)
    images = torch.stack([image for _, image in good]) if good else None
    return indices, images, skipped


def default_num_workers() -> int:
    """Decoding processes: one per CPU core beyond the main process, at most 8 (0 on one core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cores - 1)


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


def list_image_folder(root: str | os.PathLike, image_size: int = 32, channels: int = 3) -> ImageFiles:
    """The images under ``root`` (see :func:`find_images`) as :class:`ImageFiles`, nothing decoded yet.

    The images are labelled by their first-level sub-folder (class names sorted
    alphabetically) when every image lies in one; otherwise the folder is
    unlabelled (labels ``-1``, no classes). ``name`` is the folder path, ``split``
    ``"all"``.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
    """
    root = Path(root)
    files = find_images(root)
    return _files_of(root, files, _folder_classes(root, files), str(root), "all", image_size, channels)


def load_image_folder(
    root: str | os.PathLike, image_size: int = 32, channels: int = 3, progress: bool = True
) -> ImageDataset:
    """Decode every image under ``root`` into memory: :func:`list_image_folder` then :meth:`ImageFiles.load`.

    Returns:
        An :class:`ImageDataset` with images ``(N, channels, image_size, image_size)``.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
        ValueError: if it holds no image, or none of its images can be read.
    """
    return list_image_folder(root, image_size, channels).load(progress)


def make_shapes(
    num_images: int, image_size: int = 32, seed: int = 0, grid: int = 3, fill: float = 0.85
) -> tuple[Tensor, Tensor]:
    """Generate small scenes of coloured circles, squares or triangles.

    Each image is a ``grid x grid`` layout of cells on one dark background; each
    cell holds, with probability ``fill``, one shape of the image's class, with
    its own random position in the cell, size and bright colour. The class is
    the one factor that every part of an image shares, while colour, position
    and size vary from shape to shape: what DIM's local MI term rewards a code
    for capturing (Hjelm et al., ICLR 2019, Sec. 3.2). With one or a few shapes
    per image the code learns colour and position instead, and one epoch scores
    near chance. Fully determined by ``seed``.

    Returns:
        images: uint8 ``(num_images, 3, image_size, image_size)``.
        labels: int64 ``(num_images,)``: 0 circle, 1 square, 2 triangle.
    """
    if grid < 1 or not 0.0 < fill <= 1.0:
        raise ValueError(f"need grid >= 1 and 0 < fill <= 1, got grid={grid}, fill={fill}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, num_images)
    images = np.full((num_images, image_size, image_size, 3), 0.12, dtype=np.float32)  # one dark background
    pixel = np.arange(image_size, dtype=np.float32) + 0.5  # pixel centres
    cell = image_size / grid
    for row in range(grid):
        for column in range(grid):
            radius = rng.uniform(0.28, 0.42, num_images).astype(np.float32) * cell  # half the extent, in pixels
            centre_x = column * cell + rng.uniform(radius, cell - radius).astype(np.float32)
            centre_y = row * cell + rng.uniform(radius, cell - radius).astype(np.float32)
            shade = rng.uniform(0.0, 1.0, (num_images, 3)).astype(np.float32)
            shade[np.arange(num_images), rng.integers(0, 3, num_images)] = rng.uniform(0.6, 1.0, num_images)  # bright
            present = rng.uniform(size=num_images) < fill
            # the shape stays inside its cell, so only the cell's pixels are drawn
            top, bottom = int(row * cell), min(image_size, int(np.ceil((row + 1) * cell)))
            left, right = int(column * cell), min(image_size, int(np.ceil((column + 1) * cell)))
            dx = pixel[None, None, left:right] - centre_x[:, None, None]  # (N, 1, w)
            dy = pixel[None, top:bottom, None] - centre_y[:, None, None]  # (N, h, 1)
            r = radius[:, None, None]
            circle = dx**2 + dy**2 <= r**2
            square = np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
            triangle = (dy <= r) & (np.abs(dx) <= 0.6 * (dy + r))  # apex at the top, base at the bottom
            mask = np.choose(labels[:, None, None], [circle, square, triangle]) & present[:, None, None]  # (N, h, w)
            np.copyto(images[:, top:bottom, left:right], shade[:, None, None, :], where=mask[..., None])

    images += rng.standard_normal(images.shape, dtype=np.float32) * 0.02
    images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # (N, S, S, 3)
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels).long()


@functools.lru_cache(maxsize=4)
def _shapes_split(split: str, image_size: int) -> tuple[Tensor, Tensor]:
    """A split of ``shapes``, generated once per process (a few seconds for the training split)."""
    count, seed = _SHAPES_SPLITS[split]
    return make_shapes(count, image_size, seed)


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
        An :class:`ImageDataset` with images ``(N, channels, image_size, image_size)``.

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
        return ImageDataset(_convert(images.clone(), image_size, channels), labels.clone(), list(_SHAPE_CLASSES),
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
    """The files of one split of a dataset that lives in image files, as :class:`ImageFiles`.

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
    root, image_size, channels = Path(source), image_size or 32, channels or 3
    if split not in ("train", "test"):
        raise ValueError(f"an image folder has the splits 'train' and 'test', not {split!r}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        files = list_image_folder(root / split, image_size, channels)
        files.name, files.split = str(root), split
        return files
    found = find_images(root)
    classes = _folder_classes(root, found)  # from all files, so train and test agree on the label order
    chosen = [path for path in found if _split_of(path.relative_to(root).as_posix()) == split]
    if not chosen and found:
        raise ValueError(
            f"{root} has {len(found)} images, none of which fall in the {split!r} split (about 1 in 10 files go to "
            "'test', chosen by file name); add more images or make train/ and test/ sub-folders"
        )
    return _files_of(root, chosen, classes, str(root), split, image_size, channels)


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


def _split_of(relative_path: str) -> str:
    """``"test"`` for about 1 in 10 files (a fixed hash of the relative path), else ``"train"``."""
    return "test" if zlib.crc32(relative_path.encode()) % 10 == 0 else "train"


def _folder_classes(root: Path, files: list[Path]) -> list[str]:
    """Sorted first-level sub-folder names if every file lies in one, else ``[]`` (unlabelled)."""
    parts = [path.relative_to(root).parts for path in files]
    if not parts or any(len(p) < 2 for p in parts):
        return []
    return sorted({p[0] for p in parts})


def _files_of(
    root: Path, files: list[Path], classes: list[str], name: str, split: str, image_size: int, channels: int
) -> ImageFiles:
    """:class:`ImageFiles` of ``files`` under ``root``, labelled by their first-level folder when ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[path.relative_to(root).parts[0]] if classes else -1 for path in files]
    return ImageFiles(files, image_size, channels, torch.tensor(labels, dtype=torch.int64), classes, name, split, root)


def _decode_files(files: ImageFiles, progress: bool) -> tuple[Tensor, list[int], list[tuple[str, str]]]:
    """Decode every file in a thread pool (Pillow releases the GIL while decoding).

    Returns:
        images: uint8 ``(K, channels, image_size, image_size)`` of the K readable files.
        kept: indices of those K files, in order.
        skipped: ``(relative path, reason)`` of the unreadable ones.
    """
    images = torch.empty(len(files), files.channels, files.image_size, files.image_size, dtype=torch.uint8)

    def decode(i: int) -> str | None:
        _, image, reason = files[i]
        if image is not None:
            images[i] = image
        return reason

    with ThreadPoolExecutor(_DECODE_THREADS) as pool:
        results = pool.map(decode, range(len(files)))
        where = files.root or files.name
        reasons = list(tqdm(results, total=len(files), desc=f"decoding {where}", unit="img", disable=not progress))
    kept = [i for i, reason in enumerate(reasons) if reason is None]
    skipped = [(files.relative_path(i), r) for i, r in enumerate(reasons) if r is not None]
    if skipped:
        images = images[torch.tensor(kept, dtype=torch.int64)]
    return images, kept, skipped


def _cache_file(files: ImageFiles) -> Path:
    """Cache path keyed on the folder, the options and every file's name, size and mtime."""
    root = files.root
    key = (_CACHE_VERSION, str(root.resolve()), files.split, files.image_size, files.channels, files.classes)
    digest = hashlib.sha256(repr(key).encode())
    for i in range(len(files)):
        try:
            stat = files.path(i).stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:  # e.g. a broken link: decoding will skip it
            size, mtime = -1, -1
        digest.update(f"{files.relative_path(i)}\0{size}\0{mtime}\n".encode())
    cache_dir = Path(os.environ.get("DIM_CACHE_DIR") or Path.home() / ".cache" / "dim-toolkit").expanduser()
    stem = "-".join(root.resolve().parts[-2:]) + f"-{files.split}-{files.image_size}px{files.channels}c"
    return cache_dir / f"{stem}-{digest.hexdigest()[:24]}.pt"


def _read_cache(path: Path) -> dict | None:
    """The cached dict, or ``None`` when missing or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if len(cached["paths"]) != len(cached["images"]) or len(cached["labels"]) != len(cached["images"]):
            raise ValueError("inconsistent lengths")
    except Exception as error:  # truncated file, foreign format, missing keys
        logger.info(f"ignoring the unreadable cache {path} ({error}); decoding again")
        return None
    return cached


def _write_cache(path: Path, cached: dict) -> None:
    """Write the cache atomically; a cache that cannot be written only costs speed next time."""
    try:
        atomic_save(cached, path)
    except OSError as error:
        logger.warning(f"could not write the dataset cache {path} ({error}); set DIM_CACHE_DIR to a writable folder")


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
