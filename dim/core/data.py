"""Datasets as uint8 tensors in memory: named benchmarks, image folders and generated shapes.

Everything is decoded once into an :class:`ImageDataset` (uint8 ``(N, C, H, W)``
images plus int64 labels) and kept in memory, so no epoch re-decodes a JPEG.

* Named datasets (:data:`DATASET_NAMES`) come from an image-folder tree
  ``DATA_DIR/<name>/<split>/<class>/*`` when there is one, else from torchvision's
  own files under ``DATA_DIR`` (downloaded when allowed and online).
* Any folder of images: labelled by its first-level sub-folders, or unlabelled
  when some images lie directly in it. Unreadable files are skipped and recorded.
  Decoded folders are cached on disk (``$DIM_CACHE_DIR``, default
  ``~/.cache/dim-toolkit``), so the second load is fast.
* ``shapes``: coloured circles, squares and triangles generated from a seed,
  needing no files and no network.

Every image decoded from a file goes through :func:`dim.core.images.image_to_uint8`,
as embedding and search do, so training and inference see the same pixels.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from dim.core.checkpoint import atomic_save
from dim.core.images import image_to_uint8

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
_CACHE_VERSION = 1


class UnreadableImageError(ValueError):
    """A file that should be an image but cannot be decoded (empty, not an image, truncated)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(eq=False)
class ImageDataset(torch.utils.data.Dataset):
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
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_labelled(self) -> bool:
        return self.num_classes > 0

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


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file and decode it fully (not lazily), so broken files fail here.

    Raises:
        UnreadableImageError: for an empty file, a file that is not an image, or a
            truncated or otherwise corrupt one (``.path`` and ``.reason`` say which).
        OSError: if the file itself cannot be read (e.g. ``FileNotFoundError``).
    """
    data = Path(path).read_bytes()
    if not data:
        raise UnreadableImageError(path, "empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.UnidentifiedImageError:
        raise UnreadableImageError(path, "not an image file (unknown format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(path, f"corrupt or truncated image ({error})") from error
    return image


def load_image_folder(
    root: str | os.PathLike, image_size: int = 32, channels: int = 3, progress: bool = True
) -> ImageDataset:
    """Decode every image under ``root`` (see :func:`find_images`) into memory.

    The images are labelled by their first-level sub-folder (class names sorted
    alphabetically) when every image lies in one; otherwise the folder is unlabelled
    (labels ``-1``, no classes). Unreadable files are skipped, recorded in
    ``.skipped`` and summarised in one logged warning. The decoded result is cached
    on disk (see the module docstring).

    Returns:
        An :class:`ImageDataset` with images ``(N, channels, image_size, image_size)``,
        ``name`` = the folder path and ``split = "all"``.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
        ValueError: if it holds no image, or none of its images can be read.
    """
    root = Path(root)
    files = find_images(root)
    return _load_files(root, files, _folder_classes(root, files), str(root), "all", image_size, channels, progress)


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
    if source in DATASET_NAMES:
        return _load_named(str(source), split, data_dir, image_size, channels, download, progress)
    if Path(source).is_dir():
        return _load_folder_split(Path(source), split, image_size or 32, channels or 3, progress)
    raise ValueError(
        f"unknown dataset {str(source)!r}: use one of {', '.join(DATASET_NAMES)}, "
        "or the path of an existing folder of images"
    )


def _load_named(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None,
    image_size: int | None,
    channels: int | None,
    download: bool,
    progress: bool,
) -> ImageDataset:
    native_size, native_channels, _ = _NATIVE[name]
    image_size, channels = image_size or native_size, channels or native_channels
    splits = ("train", "test", "unlabeled") if name == "stl10" else ("train", "test")
    if split not in splits:
        raise ValueError(f"{name} has no split {split!r}: use one of {', '.join(splits)}")
    if name == "shapes":
        images, labels = _shapes_split(split, image_size)
        return ImageDataset(_convert(images.clone(), image_size, channels), labels.clone(), list(_SHAPE_CLASSES),
                            name, split)

    root = resolve_data_dir(data_dir)
    tree = root / name / split
    if tree.is_dir():
        return replace(load_image_folder(tree, image_size, channels, progress), name=name, split=split)
    images, labels, classes = _load_torchvision(name, split, root, download)
    return ImageDataset(_convert(images, image_size, channels), labels, classes, name, split)


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


def _load_folder_split(root: Path, split: str, image_size: int, channels: int, progress: bool) -> ImageDataset:
    """One split of a plain image folder: its train/ or test/ sub-folder, or a hash-based 90/10 split."""
    if split not in ("train", "test"):
        raise ValueError(f"an image folder has the splits 'train' and 'test', not {split!r}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return replace(load_image_folder(root / split, image_size, channels, progress), name=str(root), split=split)
    files = find_images(root)
    classes = _folder_classes(root, files)  # from all files, so train and test agree on the label order
    chosen = [path for path in files if _split_of(path.relative_to(root).as_posix()) == split]
    if not chosen and files:
        raise ValueError(
            f"{root} has {len(files)} images, none of which fall in the {split!r} split (about 1 in 10 files go to "
            "'test', chosen by file name); add more images or make train/ and test/ sub-folders"
        )
    return _load_files(root, chosen, classes, str(root), split, image_size, channels, progress)


def _split_of(relative_path: str) -> str:
    """``"test"`` for about 1 in 10 files (a fixed hash of the relative path), else ``"train"``."""
    return "test" if zlib.crc32(relative_path.encode()) % 10 == 0 else "train"


def _folder_classes(root: Path, files: list[Path]) -> list[str]:
    """Sorted first-level sub-folder names if every file lies in one, else ``[]`` (unlabelled)."""
    parts = [path.relative_to(root).parts for path in files]
    if not parts or any(len(p) < 2 for p in parts):
        return []
    return sorted({p[0] for p in parts})


def _load_files(
    root: Path,
    files: list[Path],
    classes: list[str],
    name: str,
    split: str,
    image_size: int,
    channels: int,
    progress: bool,
) -> ImageDataset:
    """Decode ``files`` (under ``root``) through the on-disk cache into an :class:`ImageDataset`."""
    if not files:
        raise ValueError(
            f"no images found in {root} (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}; "
            "hidden files and folders are ignored)"
        )
    cache_file = _cache_file(root, files, classes, split, image_size, channels)
    cached = _read_cache(cache_file)
    if cached is None:
        images, kept, skipped = _decode_files(root, files, image_size, channels, progress)
        paths = [files[i].relative_to(root).as_posix() for i in kept]
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[p.split("/")[0]] if classes else -1 for p in paths], dtype=torch.int64)
        cached = {"images": images, "labels": labels, "paths": paths, "skipped": skipped}
        _write_cache(cache_file, cached)
    skipped = [tuple(item) for item in cached["skipped"]]
    if skipped:
        path, reason = skipped[0]
        logger.warning(
            f"{root}: skipped {len(skipped)} of {len(files)} image files that could not be read "
            f"(first: {path}: {reason}); the full list is in the dataset's .skipped"
        )
        if not cached["paths"]:
            raise ValueError(f"none of the {len(files)} image files in {root} could be read (first: {path}: {reason})")
    return ImageDataset(cached["images"], cached["labels"], list(classes), name, split, list(cached["paths"]), skipped)


def _decode_files(
    root: Path, files: list[Path], image_size: int, channels: int, progress: bool
) -> tuple[Tensor, list[int], list[tuple[str, str]]]:
    """Decode files in a thread pool (PIL releases the GIL while decoding).

    Returns:
        images: uint8 ``(K, channels, image_size, image_size)`` of the K readable files.
        kept: indices into ``files`` of those K files, in order.
        skipped: ``(relative path, reason)`` of the unreadable ones.
    """
    images = torch.empty(len(files), channels, image_size, image_size, dtype=torch.uint8)

    def decode(i: int) -> str | None:
        try:
            images[i] = image_to_uint8(open_image(files[i]), image_size, channels)
        except UnreadableImageError as error:
            return error.reason
        except OSError as error:  # vanished file, broken link, no permission
            return f"cannot read the file ({error.strerror or error})"
        return None

    with ThreadPoolExecutor(_DECODE_THREADS) as pool:
        results = pool.map(decode, range(len(files)))
        reasons = list(tqdm(results, total=len(files), desc=f"decoding {root}", unit="img", disable=not progress))
    kept = [i for i, reason in enumerate(reasons) if reason is None]
    skipped = [(files[i].relative_to(root).as_posix(), r) for i, r in enumerate(reasons) if r is not None]
    if skipped:
        images = images[torch.tensor(kept, dtype=torch.int64)]
    return images, kept, skipped


def _cache_file(
    root: Path, files: list[Path], classes: list[str], split: str, image_size: int, channels: int
) -> Path:
    """Cache path keyed on the folder, the options and every file's name, size and mtime."""
    digest = hashlib.sha256(repr((_CACHE_VERSION, str(root.resolve()), split, image_size, channels, classes)).encode())
    for path in files:
        try:
            stat = path.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:  # e.g. a broken link: decoding will skip it
            size, mtime = -1, -1
        digest.update(f"{path.relative_to(root).as_posix()}\0{size}\0{mtime}\n".encode())
    cache_dir = Path(os.environ.get("DIM_CACHE_DIR") or Path.home() / ".cache" / "dim-toolkit").expanduser()
    stem = "-".join(root.resolve().parts[-2:]) + f"-{split}-{image_size}px{channels}c"  # readable, e.g. cifar10-test
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
