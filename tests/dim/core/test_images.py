"""File -> PIL image (draft JPEG decoding, EXIF) -> the model's uint8 grid (alpha on white), and uint8 -> [-1, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dim.core.images import (
    BACKGROUND,
    describe_error,
    image_to_uint8,
    load_image,
    normalize_images,
    on_background,
    open_image,
)

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
    image = Image.fromarray(pixels)
    out = image_to_uint8(image, 8, 3)
    assert torch.equal(out, torch.from_numpy(pixels).permute(2, 0, 1))  # (C, H, W), not resampled
    out[:] = 0
    assert np.array_equal(np.asarray(image), pixels)  # the tensor has its own memory: the image is left alone
    grey = image_to_uint8(Image.fromarray(pixels), 8, 1)
    expected = np.asarray(Image.fromarray(pixels).convert("L"))  # ITU-R 601-2 luma
    assert grey.shape == (1, 8, 8) and torch.equal(grey[0], torch.from_numpy(expected.copy()))
    r, g, b = (int(v) for v in pixels[0, 0])
    assert abs(int(grey[0, 0, 0]) - (0.299 * r + 0.587 * g + 0.114 * b)) <= 0.5 + 1e-9


def test_grey_and_alpha_inputs_become_the_requested_channels():
    grey = Image.new("L", (4, 4), 77)
    assert torch.equal(image_to_uint8(grey, 4, 3), torch.full((3, 4, 4), 77, dtype=torch.uint8))
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))  # opaque: the colour itself
    assert image_to_uint8(rgba, 4, 3)[:, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("alpha", [0, 64, 128, 255])
def test_transparency_is_composited_on_white(alpha):
    colour = np.array([10, 20, 200])
    expected = np.round(alpha / 255 * colour + (1 - alpha / 255) * np.array(BACKGROUND))  # a * rgb + (1 - a) * 255
    rgba = Image.new("RGBA", (4, 4), (*colour.tolist(), alpha))
    assert np.abs(image_to_uint8(rgba, 4, 3)[:, 2, 2].numpy() - expected).max() <= 1
    grey = image_to_uint8(Image.new("LA", (4, 4), (40, alpha)), 4, 1)[0, 2, 2].item()
    assert abs(grey - round(alpha / 255 * 40 + (1 - alpha / 255) * 255)) <= 1


def test_on_background_leaves_opaque_images_alone_and_flattens_the_rest():
    opaque = Image.new("RGB", (2, 2), RED)
    assert on_background(opaque) is opaque
    flat = on_background(Image.new("LA", (2, 2), (0, 0)))  # fully transparent black
    assert flat.mode == "RGB" and flat.getpixel((1, 1)) == BACKGROUND


def test_a_transparent_palette_entry_and_a_half_transparent_edge_become_white():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.info["transparency"] = 0  # index 0 (black) is transparent
    out = image_to_uint8(palette, 4, 3)
    assert out[:, 0, 0].tolist() == [255, 0, 0] and out[:, 3, 3].tolist() == list(BACKGROUND)
    pixels = np.zeros((8, 8, 4), dtype=np.uint8)
    pixels[:, :4] = (0, 0, 0, 255)  # left half opaque black, right half fully transparent black
    out = image_to_uint8(Image.fromarray(pixels, "RGBA"), 8, 3)
    assert out[:, :, :3].max() == 0 and out[:, :, 5:].min() == 255  # never black where nothing was drawn


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((8, 16, 3), dtype=np.uint8)
    pixels[:, :8] = RED  # stored: 16 wide x 8 high, red left, blue right
    pixels[:, 8:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", quality=95, exif=exif)
    image = open_image(tmp_path / "turned.jpg")
    assert image.size == (8, 16)  # shown 8 wide x 16 high: the left (red) side is now the top
    shown = np.asarray(image).astype(int)
    assert shown[2, 4, 0] > 200 and shown[2, 4, 2] < 60 and shown[13, 4, 2] > 200 and shown[13, 4, 0] < 60
    drafted = open_image(tmp_path / "turned.jpg", draft_size=2)  # decoded at 1/2 scale (8x4), then turned
    assert drafted.size == (4, 8)
    assert drafted.getexif().get(0x0112) is None  # the orientation tag is gone: it has been applied


def smooth_photo(width: int = 500, height: int = 375) -> Image.Image:
    """A photo-like RGB image: gradients plus blurred noise (JPEG-friendly, no hard edges)."""
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (height // 25, width // 25, 3), dtype=np.uint8))
    blobs = np.asarray(noise.resize((width, height), Image.Resampling.BICUBIC)).astype(np.float32)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    return Image.fromarray((0.6 * blobs + 0.4 * ramp).clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("size, drafted", [(32, (125, 94)), (64, (250, 188)), (200, (500, 375))])
def test_jpegs_decode_at_reduced_scale_close_to_the_exact_pixels(tmp_path, size, drafted):
    smooth_photo().save(tmp_path / "photo.jpg", quality=90)
    assert open_image(tmp_path / "photo.jpg", draft_size=size).size == drafted  # 1/4, 1/2, 1/1: both sides >= 2 * size
    fast = load_image(tmp_path / "photo.jpg", size, 3).float()
    exact = image_to_uint8(open_image(tmp_path / "photo.jpg"), size, 3).float()
    assert fast.shape == exact.shape == (3, size, size)
    assert (fast - exact).abs().mean() < 2.0 and (fast - exact).abs().max() < 40


@pytest.mark.parametrize("size", [32, 200])
def test_a_grey_model_decodes_a_colour_jpeg_to_its_luma_alone(tmp_path, size):
    smooth_photo().save(tmp_path / "photo.jpg", quality=90)
    assert open_image(tmp_path / "photo.jpg", grey=True).mode == "L"  # luma only, at full size
    luma = load_image(tmp_path / "photo.jpg", size, 1).int()
    via_colours = image_to_uint8(open_image(tmp_path / "photo.jpg", draft_size=size), size, 1).int()
    assert luma.shape == (1, size, size) and (luma - via_colours).abs().max() <= 1  # the same ITU-R 601-2 luma
    smooth_photo(64, 48).save(tmp_path / "photo.png")
    assert open_image(tmp_path / "photo.png", grey=True).mode == "RGB"  # no luma-only decoding: as it is


def test_other_formats_decode_exactly_whatever_the_draft_size(tmp_path):
    smooth_photo(64, 48).save(tmp_path / "photo.png")
    exact = open_image(tmp_path / "photo.png")
    assert open_image(tmp_path / "photo.png", draft_size=8).size == (64, 48)
    assert torch.equal(load_image(tmp_path / "photo.png", 8, 3), image_to_uint8(exact, 8, 3))


def test_describe_error_is_one_line():
    assert describe_error(FileNotFoundError(2, "No such file or directory")) == "cannot read the file (No such file or directory)"
    assert describe_error(ValueError("bad\n\tvalue")) == "ValueError: bad value"


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


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_large_images_are_reduced_first_close_to_a_direct_resize(mode):
    photo = smooth_photo(640, 480)  # shorter side 480 >= 2 * 32: box-reduced first, then resized
    image = photo.convert("RGBA") if mode == "RGBA" else photo.quantize(64) if mode == "P" else photo
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(image.size))  # opacity from 0 (top) to 255 (bottom)
    direct = image.convert("RGBA")  # composited at full size, then resized in one bicubic pass
    direct = Image.alpha_composite(Image.new("RGBA", direct.size, (*BACKGROUND, 255)), direct).convert("RGB")
    expected = np.asarray(direct.resize((43, 32), Image.Resampling.BICUBIC).crop((5, 0, 37, 32))).astype(np.float32)
    out = image_to_uint8(image, 32, 3).permute(1, 2, 0).numpy().astype(np.float32)  # (32, 32, 3)
    assert out.shape == (32, 32, 3) and np.abs(out - expected).mean() < 1.5
