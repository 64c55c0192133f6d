"""Helpers for the dim.core tests: small image files written on the fly."""

from pathlib import Path

from PIL import Image


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (8, 8)) -> Path:
    """A small solid-colour RGB image; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image_format = Image.registered_extensions()[path.suffix.lower()]
    Image.new("RGB", size, (value, 255 - value, value // 2)).save(path, format=image_format)
    return path
