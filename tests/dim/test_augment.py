"""Batched augmentations: what each one may and may not change."""

from __future__ import annotations

import pytest
import torch

from dim.augment import (
    AUGMENTATIONS,
    augment,
    color_jitter,
    random_crop,
    random_grayscale,
    random_resized_crop,
)


def test_every_pipeline_keeps_shape_and_range():
    images = torch.rand(6, 3, 8, 8) * 2 - 1
    for mode in AUGMENTATIONS:
        out = augment(images, mode)
        assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1, mode
    with pytest.raises(ValueError, match="augmentation 'mixup'"):
        augment(images, "mixup")


def test_a_crop_is_a_translation():
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)  # column index as the pixel value
    shifted = random_crop(ramp, padding=2)[0, 0]  # rows stay identical ramps
    assert torch.equal(shifted[0], shifted[-1])


def test_a_full_resized_crop_is_the_identity_and_a_small_one_zooms_in():
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    same = random_resized_crop(images, scale=(1.0, 1.0), ratio=1.0)  # the whole image, resized to itself
    assert torch.allclose(same, images, atol=1e-5)
    ramp = torch.linspace(-1, 1, 16).expand(64, 1, 16, 16)  # brightness rises left to right
    zoomed = random_resized_crop(ramp, scale=(0.25, 0.25), ratio=1.0)  # half the side of each image
    spread = zoomed[:, 0, 0, -1] - zoomed[:, 0, 0, 0]  # left-to-right rise within each crop
    assert (spread - spread.mean()).abs().max() < 0.1  # every box has the same size (up to the border half-pixel)
    assert 0.8 < spread.mean() < 1.1  # about half the full rise of 2
    assert zoomed[:, 0, 0, 0].std() > 0.1  # at different places


def test_grayscale_replaces_colour_by_the_channel_mean_or_leaves_it():
    images = torch.rand(5, 3, 4, 4) * 2 - 1
    grey = random_grayscale(images, probability=1.0)
    assert torch.allclose(grey, images.mean(dim=1, keepdim=True).expand_as(images))
    assert torch.equal(random_grayscale(images, probability=0.0), images)
    single = torch.rand(2, 1, 4, 4)
    assert torch.equal(random_grayscale(single, probability=1.0), single)  # grey images stay as they are


def test_jitter_keeps_a_grey_image_grey():
    grey = torch.rand(3, 1, 4, 4).expand(3, 3, 4, 4) * 2 - 1
    out = color_jitter(grey)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
