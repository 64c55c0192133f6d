"""Image decoding and preprocessing shared by training data, embedding and search, so all three agree.

One path turns a file into the model's input: :func:`open_image` reads and
decodes it (JPEGs at a reduced scale when the target size allows, and to their
luma alone for a grey model; EXIF orientation applied), :func:`image_to_uint8` resizes and centre-crops it,
composites transparency onto :data:`BACKGROUND` and converts to grey or RGB;
:func:`load_image` is the two in one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

# Transparent pixels are composited onto white, as a page or a viewer shows them (clipart, logos, icons).
BACKGROUND: tuple[int, int, int] = (255, 255, 255)
# What decoding a damaged or foreign file may raise: UnreadableImageError is a ValueError; PIL raises
# OSError subclasses and DecompressionBombError for huge images.
DECODE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


class UnreadableImageError(ValueError):
    """A file that should be an image but cannot be decoded (empty, not an image, truncated)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def describe_error(error: BaseException) -> str:
    """One-line reason for a skipped file (no tabs or newlines, so it fits a listing)."""
    reason = getattr(error, "reason", None)
    if reason is None and isinstance(error, OSError) and error.strerror:  # vanished file, broken link, no permission
        reason = f"cannot read the file ({error.strerror})"
    reason = reason or f"{type(error).__name__}: {error}"
    return " ".join(str(reason).split())


def open_image(path: str | os.PathLike, draft_size: int | None = None, grey: bool = False) -> Image.Image:
    """Open an image file, decode it fully (not lazily, so broken files fail here) and orient it.

    Args:
        path: the file.
        draft_size: the side the image will be resized to, if known. A JPEG is then
            decoded at the smallest of 1/1, 1/2, 1/4 or 1/8 scale that keeps both
            sides at least ``2 * draft_size`` (Pillow's ``Image.draft``: the inverse
            DCT runs at the reduced size, so most of its work is skipped; the factor 2
            leaves the final antialiased resize a real reduction, as Pillow's own
            ``thumbnail`` does, and keeps the pixels within about 1 level of the exact
            decode on average, see the tests). Other formats have no reduced-scale
            decoding: they decode at full size, and :func:`image_to_uint8` box-reduces
            them by an integer factor before its resize.
        grey: the image will be made grey. A colour (YCbCr) JPEG is then decoded to
            its luma channel only, which is the ITU-R 601-2 luma ``convert("L")``
            computes from the decoded colours (to within 1 level), without the work
            of decoding and converting the colours.

    The EXIF orientation tag is applied (the pixels are rotated or flipped as a
    viewer shows them).

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
        if image.format == "JPEG" and (draft_size is not None or grey):
            image.draft("L" if grey else image.mode, None if draft_size is None else (2 * draft_size, 2 * draft_size))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy of an image that needs no turning
    except Image.UnidentifiedImageError:
        raise UnreadableImageError(path, "not an image file (unknown format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(path, f"corrupt or truncated image ({error})") from error
    return image


def load_image(path: str | os.PathLike, image_size: int, channels: int) -> Tensor:
    """A file as the model's ``(channels, image_size, image_size)`` uint8 input.

    :func:`open_image` with ``draft_size=image_size`` (and ``grey`` for one channel),
    then :func:`image_to_uint8`.
    """
    return image_to_uint8(open_image(path, draft_size=image_size, grey=channels == 1), image_size, channels)


def has_transparency(image: Image.Image) -> bool:
    """Whether ``image`` carries an alpha channel or a transparent palette entry or colour."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def on_background(image: Image.Image) -> Image.Image:
    """``image`` composited onto :data:`BACKGROUND` if it has transparency (then RGB), else ``image`` itself.

    ``out = a * rgb + (1 - a) * 255`` per pixel at opacity ``a`` (Pillow's ``alpha_composite``).
    """
    if not has_transparency(image):
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")


def image_to_uint8(image: Image.Image, image_size: int, channels: int) -> Tensor:
    """Convert a PIL image to the model's input grid as uint8.

    The image is converted to grey (``channels=1``, ITU-R 601-2 luma) or RGB
    (``channels=3``), resized so the shorter side is ``image_size`` (bicubic,
    antialiased; from images at least twice as large, first box-reduced by an
    integer factor, Pillow's ``reducing_gap=2``, so huge drawings cost little time
    and memory) and centre-cropped to a square. Images already at the target size
    are only converted. An image with transparency (:func:`has_transparency`) is
    resized as RGBA (Pillow resamples it with premultiplied alpha) and then
    composited onto :data:`BACKGROUND` (white, :func:`on_background`) before the
    conversion.

    Returns:
        ``(channels, image_size, image_size)`` uint8 tensor.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    transparent = has_transparency(image)
    mode = "RGBA" if transparent else "L" if channels == 1 else "RGB"
    if image.mode != mode:  # converting to the same mode would copy the whole image
        image = image.convert(mode)
    width, height = image.size
    if (width, height) != (image_size, image_size):
        scale = image_size / min(width, height)
        new_size = (max(image_size, round(width * scale)), max(image_size, round(height * scale)))
        image = image.resize(new_size, Image.Resampling.BICUBIC, reducing_gap=2.0)
        left = (new_size[0] - image_size) // 2
        top = (new_size[1] - image_size) // 2
        image = image.crop((left, top, left + image_size, top + image_size))
    if transparent:
        image = on_background(image).convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (C, H, W)


def normalize_images(images: Tensor) -> Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1] (any leading shape, same device)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)
