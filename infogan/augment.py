"""Random affine warps of image batches, differentiable, one warp per image.

The invariance term (:class:`infogan.objective.InfoLoss` ``categorical_loss`` on
warped fakes, ``TrainConfig.lambda_invariance``) asks Q to read the same
category from ``random_affine(G(z, c))`` as from ``G(z, c)``. Slant, width and
position then cannot carry the categorical code, which leaves them to the
continuous codes (the transformation consistency of Ojha et al.,
*Elastic-InfoGAN*, NeurIPS 2020).

Gradients flow through the warp to the images, so G is trained by the term too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AffineRange:
    """Limits of the random warp; every parameter is drawn uniformly and independently per image.

    Args:
        rotation: largest rotation in degrees (either way).
        shear: largest horizontal shear factor (x += shear * y), either way.
        scale: largest relative change of width and of height, drawn separately.
        shift: largest translation as a fraction of the image side, per axis.
    """

    rotation: float = 15.0
    shear: float = 0.2
    scale: float = 0.15
    shift: float = 0.1

    def __post_init__(self) -> None:
        for name in ("rotation", "shear", "scale", "shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.scale >= 1:
            raise ValueError(f"scale must be < 1 (a factor in (1 - scale, 1 + scale)), got {self.scale}")


def affine_matrices(batch_size: int, limits: AffineRange, device: torch.device | str = "cpu") -> Tensor:
    """``(B, 2, 3)`` random matrices in :func:`torch.nn.functional.affine_grid`'s normalised coordinates.

    Each is ``[R(theta) @ Shear(s) @ diag(sx, sy) | t]``: the output pixel at
    ``p`` (in [-1, 1]^2) reads the input at ``A p + t``. Draws from the global RNG.
    """

    def uniform(limit: float) -> Tensor:
        return (torch.rand(batch_size, device=device) * 2 - 1) * limit  # (B,)

    theta = uniform(math.radians(limits.rotation))
    shear = uniform(limits.shear)
    sx, sy = 1 + uniform(limits.scale), 1 + uniform(limits.scale)
    cos, sin = theta.cos(), theta.sin()
    # R @ [[1, shear], [0, 1]] @ diag(sx, sy)
    linear = torch.stack([
        torch.stack([cos * sx, (cos * shear - sin) * sy], dim=1),
        torch.stack([sin * sx, (sin * shear + cos) * sy], dim=1),
    ], dim=1)  # (B, 2, 2)
    translation = torch.stack([uniform(2 * limits.shift), uniform(2 * limits.shift)], dim=1)  # (B, 2): side = 2
    return torch.cat([linear, translation[:, :, None]], dim=2)  # (B, 2, 3)


def random_affine(images: Tensor, limits: AffineRange = AffineRange()) -> Tensor:
    """Warp each of the ``(B, C, H, W)`` images by its own random affine map (bilinear, border padding).

    Border padding repeats the edge pixels, i.e. the background of digit-like
    images, so no artificial frame appears whatever the value range.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    matrices = affine_matrices(images.shape[0], limits, images.device).to(images.dtype)  # (B, 2, 3)
    grid = F.affine_grid(matrices, list(images.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
