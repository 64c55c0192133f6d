"""PIL image -> the model's uint8 grid, and uint8 -> [-1, 1], on hand-made images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dim.core.images import image_to_uint8, normalize_images

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def bands(width: int, height: int, horizontal: bool = True) -> Image.Image:
    """Red, green, blue bands of 1/4, 1/2 and 1/4 of the longer side: the centre square is all green."""
    length = width if horizontal else height
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    quarter = length // 4
    for colour, start, stop in [(RED, 0, quarter), (GREEN, quarter, length - quarter), (BLUE, length - quarter, length)]:
        if horizontal:
            pixels[:, start:stop] = colour
        else:
            pixels[start:stop, :] = colour
    return Image.fromarray(pixels)


@pytest.mark.parametrize("horizontal", [True, False], ids=["wide", "tall"])
def test_resize_then_centre_crop_keeps_the_middle(horizontal):
    image = bands(40, 20) if horizontal else bands(20, 40, horizontal=False)
    out = image_to_uint8(image, 10, 3)  # shorter side 20 -> 10: the 20x40 image becomes 10x20, cropped to its middle
    assert out.shape == (3, 10, 10) and out.dtype == torch.uint8
    inner = out[:, 2:-2, 2:-2]  # away from the blurred band edges, pure green
    assert torch.equal(inner, torch.tensor(GREEN, dtype=torch.uint8).view(3, 1, 1).expand_as(inner))
    sides = out[:, :, [0, -1]] if horizontal else out[:, [0, -1], :]
    assert sides[1].min() > 128  # the crop edge is still mostly green: red and blue lie outside the crop
    assert sides[0].max() < 128 and sides[2].max() < 128


def test_an_image_at_the_target_size_is_only_converted():
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = image_to_uint8(Image.fromarray(pixels), 8, 3)
    assert torch.equal(out, torch.from_numpy(pixels).permute(2, 0, 1))  # (C, H, W), not resampled
    grey = image_to_uint8(Image.fromarray(pixels), 8, 1)
    expected = np.asarray(Image.fromarray(pixels).convert("L"))  # ITU-R 601-2 luma
    assert grey.shape == (1, 8, 8) and torch.equal(grey[0], torch.from_numpy(expected.copy()))
    r, g, b = (int(v) for v in pixels[0, 0])
    assert abs(int(grey[0, 0, 0]) - (0.299 * r + 0.587 * g + 0.114 * b)) <= 0.5 + 1e-9


def test_grey_and_alpha_inputs_become_the_requested_channels():
    grey = Image.new("L", (4, 4), 77)
    assert torch.equal(image_to_uint8(grey, 4, 3), torch.full((3, 4, 4), 77, dtype=torch.uint8))
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # alpha is dropped, not blended
    assert image_to_uint8(rgba, 4, 3)[:, 0, 0].tolist() == [10, 20, 30]


def test_a_smaller_image_is_upscaled():
    out = image_to_uint8(Image.new("RGB", (3, 2), BLUE), 6, 3)
    assert torch.equal(out, torch.tensor(BLUE, dtype=torch.uint8).view(3, 1, 1).expand(3, 6, 6))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="channels must be 1 .* or 3 .*, got 2"):
        image_to_uint8(Image.new("RGB", (4, 4)), 4, 2)
    with pytest.raises(ValueError, match="image_size must be positive, got 0"):
        image_to_uint8(Image.new("RGB", (4, 4)), 0, 3)


def test_normalize_maps_0_and_255_to_the_ends_exactly():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize_images(images)
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert out.flatten().tolist() == [-1.0, pytest.approx(51 / 127.5 - 1, abs=1e-7), 1.0]
    assert images.flatten().tolist() == [0, 51, 255]  # the input is left alone
    every = normalize_images(torch.arange(256, dtype=torch.uint8))
    assert torch.all(every[1:] > every[:-1])  # strictly increasing over all 256 levels
    assert torch.allclose(every, torch.arange(256.0) / 127.5 - 1, atol=1e-7)


def test_normalize_refuses_float_images():
    with pytest.raises(ValueError, match="expected uint8 images, got torch.float32"):
        normalize_images(torch.zeros(1, 3, 2, 2))
