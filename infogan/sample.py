"""Traversal grids: what one code controls, with the noise and the other codes held fixed.

Chen et al., *InfoGAN*, NeurIPS 2016, Figure 2: varying c1 changes the digit;
varying c2 or c3 from -2 to 2 (beyond the training range -1..1) changes
rotation and width while the digit stays the same.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from infogan.checkpoint import load_run
from infogan.models import InfoGAN


def traversal_images(
    model: InfoGAN,
    vary: str = "c1",
    value_range: float = 2.0,
    columns: int = 10,
    rows: int | None = None,
    seed: int = 0,
) -> Tensor:
    """G's images for :meth:`infogan.codes.LatentSpec.traversal`: ``(rows * columns, C, H, W)`` in [0, 1], row-major."""
    latent = model.spec.traversal(vary, columns=columns, rows=rows, value_range=value_range, seed=seed)
    return model.generate(latent).add(1).div(2).cpu()


def save_traversal(
    run: str | os.PathLike,
    out: str | os.PathLike,
    vary: str = "c1",
    value_range: float = 2.0,
    columns: int = 10,
    rows: int | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Load a trained run and write its traversal grid for code ``vary`` to the PNG ``out``.

    Rows are the categories of a varied categorical code; for a continuous code
    each row is one noise sample (stepping through c1's categories) and the
    columns sweep the code from ``-value_range`` to ``value_range``.
    """
    from torchvision.utils import (
        save_image,  # here: torchvision adds seconds to every CLI start
    )

    trained = load_run(run, device)
    images = traversal_images(trained.model, vary, value_range, columns, rows, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, out, nrow=columns, padding=2)
    return out
