"""Tests for dim.core.shapes."""

import torch

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
