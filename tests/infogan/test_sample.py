"""O-GAN's reconstruction picture: real images above G(standardise(E(x))), and the standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from infogan.codes import LatentSpec
from infogan.models import OGAN, InfoGAN
from infogan.sample import (
    reconstruct,
    reconstruction_grid,
    save_reconstructions,
    standardise,
)
from tests.infogan.conftest import TINY_IMAGE_SIZE

S, PAD = TINY_IMAGE_SIZE, 2  # make_grid puts 2 px of black before every image and after the last


def cell(grid: torch.Tensor | np.ndarray, row: int, column: int):
    """The image at ``(row, column)`` of a make_grid picture of S x S images, ``(C, S, S)`` or ``(S, S, C)``."""
    top, left = PAD + row * (S + PAD), PAD + column * (S + PAD)
    if isinstance(grid, np.ndarray):  # a PNG read back: (H, W, C)
        return grid[top : top + S, left : left + S]
    return grid[:, top : top + S, left : left + S]


def test_standardise_gives_each_row_mean_zero_and_the_priors_std():
    # [1, 2, 3]: mean 2, population std sqrt(2/3), so [-1, 0, 1] / sqrt(2/3)
    expected = torch.tensor([[-1.0, 0.0, 1.0]]) / (2 / 3) ** 0.5
    torch.testing.assert_close(standardise(torch.tensor([[1.0, 2.0, 3.0]])), expected)
    torch.testing.assert_close(standardise(torch.tensor([[10.0, 20.0, 30.0]]), std=0.5), 0.5 * expected)


@pytest.fixture
def ogan_model() -> OGAN:
    torch.manual_seed(0)
    return OGAN(LatentSpec(noise_dim=6, noise="normal", categorical=(), continuous=0, needs_code=False), 1, S).eval()


def test_reconstruction_is_g_of_the_standardised_encoding(ogan_model):
    images = torch.randint(0, 256, (3, 1, S, S), dtype=torch.uint8)
    noise = standardise(ogan_model.encoder(images.float() / 127.5 - 1))
    expected = ogan_model.generator(noise)  # eval mode: G reads the noise alone
    torch.testing.assert_close(reconstruct(ogan_model, images), expected)
    with pytest.raises(TypeError, match="need an O-GAN model"):
        reconstruct(InfoGAN(LatentSpec(), 1, S), images)
    with pytest.raises(ValueError, match=r"uint8 \(N, 1, 8, 8\)"):
        reconstruct(ogan_model, images.float())


def test_the_grid_puts_real_images_above_their_reconstructions(ogan_model, tmp_path):
    images = torch.randint(0, 256, (3, 1, S, S), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    grid = reconstruction_grid(ogan_model, images, columns=2)  # rows: real 0 1, fake 0 1, real 2 -, fake 2 -
    assert grid.shape == (3, PAD + 4 * (S + PAD), PAD + 2 * (S + PAD))  # grey images drawn in RGB
    fakes = reconstruct(ogan_model, images).add(1).div(2)  # (3, 1, S, S) in [0, 1]
    for index, (row, column) in enumerate([(0, 0), (0, 1), (2, 0)]):
        torch.testing.assert_close(cell(grid, row, column), (images[index].float() / 255).expand(3, S, S))
        torch.testing.assert_close(cell(grid, row + 1, column), fakes[index].expand(3, S, S))
    assert cell(grid, 2, 1).abs().sum() == 0 and cell(grid, 3, 1).abs().sum() == 0  # the short last pair: black

    path = save_reconstructions(ogan_model, images, tmp_path / "pictures" / "reconstructions.png")
    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    assert pixels.shape == (PAD + 2 * (S + PAD), PAD + 3 * (S + PAD), 3)  # 10 columns at most: one pair of rows
    for index in range(3):  # the top row holds the inputs' own pixel values, in every channel
        assert np.array_equal(cell(pixels, 0, index), np.repeat(images[index].numpy().transpose(1, 2, 0), 3, axis=2))
