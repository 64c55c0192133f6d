"""Image files: finding them in folders, decoding them when read or all at once, and the decode cache.

* :func:`find_images` lists the images under a folder, recognised by extension
  (:data:`IMAGE_EXTENSIONS`).
* :class:`ImageFiles` holds a file list and labels; its images are decoded when
  read, in ``torch.utils.data.DataLoader`` workers (:func:`collate_files`
  batches them, :func:`default_num_workers` sizes the pool of a training run).
  A folder too large for memory (:func:`dim.core.memory.fits_in_memory`) is
  streamed so.
* :func:`median_shorter_side` reads the typical size of a folder's images from
  their headers, without decoding them.
* :meth:`ImageFiles.load` decodes every file in a thread pool into an
  :class:`~dim.core.memory.ImageDataset`; unreadable files are skipped and
  recorded. The result is cached on disk (``$DIM_CACHE_DIR``, default
  ``~/.cache/dim-toolkit``), keyed on the folder, the options and every file's
  name, size and mtime, so the second load is fast.
* A folder is labelled by its first-level sub-folders, or unlabelled when some
  images lie directly in it (:func:`list_image_folder`);
  :func:`list_folder_split` takes its train or test split.

Every image decoded from a file goes through :func:`dim.core.images.load_image`,
as embedding and search do, so training and inference see the same pixels.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import statistics
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from PIL import Image
from tqdm import tqdm

from dim.core.atomic import atomic_save
from dim.core.images import DECODE_ERRORS, describe_error, load_image
from dim.core.memory import ImageDataset, _Labelled

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MAX_DECODING_WORKERS = 8  # decoding processes at most, however many cores
_DECODE_THREADS = min(16, 2 * (os.cpu_count() or 1))
_CACHE_VERSION = 3  # 2: JPEGs decoded at reduced scale, EXIF orientation, alpha on white; 3: grey JPEGs from luma


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


def decode_file(path: str | os.PathLike, image_size: int, channels: int) -> tuple[Tensor | None, str | None]:
    """One file as the model's input, or why it cannot be read: ``(image, None)`` or ``(None, reason)``.

    ``image`` is the uint8 ``(channels, image_size, image_size)`` tensor of
    :func:`dim.core.images.load_image` (JPEGs decoded at reduced scale);
    ``reason`` is the one-line :func:`dim.core.images.describe_error` of a file
    that cannot be decoded. Every file the toolkit embeds is decoded here:
    :class:`ImageFiles` items and the Ray engine's decoding step
    (:mod:`dim.core.ray_embedding`).
    """
    try:
        return load_image(path, image_size, channels), None
    except DECODE_ERRORS as error:
        return None, describe_error(error)


class ImageFiles(_Labelled, torch.utils.data.Dataset):
    """Image files decoded when read: the streaming counterpart of :class:`~dim.core.memory.ImageDataset`.

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
        split: as :attr:`dim.core.memory.ImageDataset.split`.
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
        return index, *decode_file(self.path(index), self.image_size, self.channels)

    def subset(self, indices: Sequence[int] | Tensor) -> ImageFiles:
        """The files at ``indices``, in that order, with their labels."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        picked = copy.copy(self)  # the byte array indexed: no name is decoded and encoded again
        picked._files, picked.labels = self._files[indices.numpy()], self.labels[indices]
        return picked

    def load(self, progress: bool = True, cache: bool = True) -> ImageDataset:
        """Decode every file into an :class:`~dim.core.memory.ImageDataset`, skipping the unreadable ones.

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


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_workers() -> int:
    """Decoding processes while training: one per CPU core beyond the main process, at most
    :data:`MAX_DECODING_WORKERS` (0 on one core). Embedding splits the cores otherwise
    (:func:`dim.core.embedding.decoding_split`)."""
    return min(MAX_DECODING_WORKERS, available_cores() - 1)


def median_shorter_side(paths: Sequence[str | os.PathLike], sample: int = 500) -> int | None:
    """The median shorter side, in pixels, of up to ``sample`` of ``paths`` spread evenly over the list.

    Only each file's header is read (Pillow opens lazily); files that cannot be
    opened are left out. Returns ``None`` when none of the sampled files opens.
    """
    if sample < 1:
        raise ValueError(f"sample must be positive, got {sample}")
    step = max(1, len(paths) // sample)
    sides = []
    for path in list(paths)[::step][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except DECODE_ERRORS:
            continue
    return statistics.median_low(sides) if sides else None


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
        An :class:`~dim.core.memory.ImageDataset` with images ``(N, channels, image_size, image_size)``.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
        ValueError: if it holds no image, or none of its images can be read.
    """
    return list_image_folder(root, image_size, channels).load(progress)


def list_folder_split(root: str | os.PathLike, split: str, image_size: int = 32, channels: int = 3) -> ImageFiles:
    """The ``split`` of the images under ``root`` as :class:`ImageFiles`, nothing decoded yet.

    A folder with ``train/`` and ``test/`` sub-folders uses them (each listed by
    :func:`list_image_folder`); any other folder is split about 90/10 into
    train/test by a hash of each file's relative path, labelled as
    :func:`list_image_folder` labels it. ``name`` is the folder path.

    Raises:
        ValueError: for a split other than ``"train"`` and ``"test"``, or when no
            image of the folder falls in ``split``.
        FileNotFoundError: if ``root`` is not a directory.
    """
    root = Path(root)
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
