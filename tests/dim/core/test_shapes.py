"""Tests for dim.core.shapes."""

import torch

from dim.core import shapes
from dim.core.shapes import make_shapes


def test_make_shapes_is_deterministic_and_well_formed():
    images, labels = make_shapes(64, image_size=24, seed=3)
    again, again_labels = make_shapes(64, image_size=24, seed=3)
    other, _ = make_shapes(64, image_size=24, seed=4)
    assert images.shape == (64, 3, 24, 24) and images.dtype == torch.uint8
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert set(labels.tolist()) == {0, 1, 2}
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(images, other)
    assert images.float().std() > 30  # bright shapes on a dark background, not blank images


def test_the_images_do_not_depend_on_the_block_size_of_the_noise_pass(monkeypatch):
    whole, _ = make_shapes(50, image_size=20, seed=7)  # one block: 50 * 20 * 20 * 3 values < _BLOCK_VALUES
    monkeypatch.setattr(shapes, "_BLOCK_VALUES", 3 * 20 * 20 * 3)  # blocks of 3 images, the last one of 2
    blocked, _ = make_shapes(50, image_size=20, seed=7)
    assert torch.equal(whole, blocked)
    assert whole.is_contiguous() and whole.shape == (50, 3, 20, 20)
