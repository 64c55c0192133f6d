"""The random affine warp behind the invariance term."""

from __future__ import annotations

import math

import pytest
import torch

from infogan.augment import AffineRange, affine_matrices, random_affine


def test_no_range_is_the_identity():
    images = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    matrices = affine_matrices(4, AffineRange(0, 0, 0, 0))
    torch.testing.assert_close(matrices, torch.eye(2, 3).expand(4, 2, 3))
    torch.testing.assert_close(random_affine(images, AffineRange(0, 0, 0, 0)), images)


def test_matrices_stay_within_their_limits():
    torch.manual_seed(0)
    limits = AffineRange(rotation=20, shear=0.0, scale=0.0, shift=0.1)
    matrices = affine_matrices(1000, limits)  # (B, 2, 3)
    linear, shift = matrices[:, :, :2], matrices[:, :, 2]
    # rotation only: orthonormal, det 1, angle within +-20 degrees
    torch.testing.assert_close(linear @ linear.transpose(1, 2), torch.eye(2).expand(1000, 2, 2))
    angles = torch.atan2(linear[:, 1, 0], linear[:, 0, 0])
    assert angles.abs().max() <= math.radians(20) + 1e-6 and angles.abs().max() > math.radians(18)
    assert shift.abs().max() <= 0.2 + 1e-6  # a tenth of the side, which spans 2 in normalised units

    scaled = affine_matrices(1000, AffineRange(rotation=0, shear=0.3, scale=0.15, shift=0))
    det = torch.linalg.det(scaled[:, :, :2])  # shear keeps area: det = sx * sy
    assert det.min() >= 0.85**2 - 1e-6 and det.max() <= 1.15**2 + 1e-6


def test_a_shift_moves_the_pixels():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 3] = 1.0
    matrix = torch.tensor([[[1.0, 0.0, -0.25], [0.0, 1.0, 0.0]]])  # reads from x - 1 pixel: moves right by 1
    grid = torch.nn.functional.affine_grid(matrix, [1, 1, 8, 8], align_corners=False)
    moved = torch.nn.functional.grid_sample(image, grid, align_corners=False)
    assert moved[0, 0, 3, 4] == pytest.approx(1.0)


def test_a_rotation_leaves_a_centred_blob_in_place():
    side = torch.linspace(-1, 1, 29)[:-1] + 1 / 28  # pixel centres in normalised coordinates
    blob = torch.exp(-(side[None, :] ** 2 + side[:, None] ** 2) / 0.1).expand(8, 1, 28, 28)  # round: (8, 1, 28, 28)
    torch.manual_seed(0)
    rotated = random_affine(blob, AffineRange(rotation=90, shear=0, scale=0, shift=0))
    torch.testing.assert_close(rotated, blob, atol=0.03, rtol=0)  # bilinear interpolation error only
    shifted = random_affine(blob, AffineRange(rotation=0, shear=0, scale=0, shift=0.2))
    assert (shifted - blob).abs().amax() > 0.2  # a shift, unlike a rotation, moves it


def test_each_image_gets_its_own_warp_and_gradients_reach_the_images():
    images = torch.rand(1, 1, 28, 28).repeat(6, 1, 1, 1).requires_grad_()
    torch.manual_seed(0)
    warped = random_affine(images)
    assert warped.shape == images.shape
    assert len({tuple(w.flatten()[:50].tolist()) for w in warped}) == 6
    warped.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_bad_limits_and_shapes_are_refused():
    with pytest.raises(ValueError, match="rotation must be >= 0"):
        AffineRange(rotation=-1)
    with pytest.raises(ValueError, match="scale must be < 1"):
        AffineRange(scale=1.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_affine(torch.rand(28, 28))
