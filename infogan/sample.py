"""Pictures of a trained run: traversal grids (InfoGAN) and reconstructions (O-GAN).

Chen et al., *InfoGAN*, NeurIPS 2016, Figure 2: varying c1 changes the digit;
varying c2 or c3 from -2 to 2 (beyond the training range -1..1) changes
rotation and width while the digit stays the same.

Su, *O-GAN*, arXiv 1903.01931: the trained discriminator encodes an image x
as E(x), and G(standardise(E(x))) reconstructs it (:func:`reconstruct`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from dim.core.images import load_image, normalize_images
from infogan.checkpoint import load_run
from infogan.codes import Latent
from infogan.models import OGAN, InfoGAN


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

    Raises:
        ValueError: for an unknown code, or an O-GAN run (it has no codes; see :func:`save_reconstruction`).
    """
    from torchvision.utils import (
        save_image,  # here: torchvision adds seconds to every CLI start
    )

    trained = load_run(run, device)
    if not trained.model.spec.code_names:  # an O-GAN run
        raise ValueError(f"{trained.path} is an O-GAN run: it has no codes to vary; draw reconstructions "
                         f"with --reconstruct IMAGES instead")
    images = traversal_images(trained.model, vary, value_range, columns, rows, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, out, nrow=columns, padding=2)
    return out


def standardise(codes: Tensor, std: float = 1.0, eps: float = 1e-12) -> Tensor:
    """Each row rescaled to mean 0 and standard deviation ``std`` over the dimensions.

    ``out_i = std * (e_i - m_i) / max(s_i, eps)`` with ``m_i = (1/D) sum_d e_id``
    and ``s_i = sqrt((1/D) sum_d (e_id - m_i)^2)`` (the population standard
    deviation, as the O-GAN code's ``numpy.std``). ``std`` is the prior's
    (:attr:`infogan.codes.LatentSpec.noise_std`: 1 for O-GAN's N(0, 1) noise).

    Shapes:
        codes: ``(B, D)`` -> ``(B, D)``.
    """
    centred = codes - codes.mean(dim=1, keepdim=True)  # (B, D)
    spread = centred.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(eps)  # (B, 1)
    return std * centred / spread


@torch.no_grad()
def reconstruct(model: OGAN, images: Tensor) -> Tensor:
    """O-GAN's reconstructions ``G(standardise(E(x)))`` of uint8 ``(N, C, S, S)`` images.

    E and G run in eval mode (BatchNorm with its running statistics). The
    encoding is standardised per image because only its correlation with z was
    trained: its mean is D's real/fake score, and its scale is free.

    Returns:
        ``(N, C, S, S)`` float images in [-1, 1] on the model's device.

    Raises:
        TypeError: if ``model`` is not an :class:`~infogan.models.OGAN`.
        ValueError: if ``images`` are not uint8 at the model's input shape.
    """
    if not isinstance(model, OGAN):
        raise TypeError("reconstructions need an O-GAN model (its discriminator is the encoder), "
                        f"got {type(model).__name__}; train one with --objective ogan")
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1:] != (
        model.channels, model.image_size, model.image_size
    ):
        raise ValueError(f"images must be uint8 (N, {model.channels}, {model.image_size}, {model.image_size}), "
                         f"got {images.dtype} {tuple(images.shape)}")
    codes = model.encode(normalize_images(images))  # (N, noise_dim)
    noise = standardise(codes, model.spec.noise_std)
    no_codes = noise.new_empty(len(noise), 0)
    return model.generate(Latent(noise, no_codes.long(), no_codes))


def reconstruction_grid(model: OGAN, images: Tensor, columns: int = 10, padding: int = 2) -> Tensor:
    """A picture of real images above their reconstructions (``torchvision.utils.make_grid``).

    The images go ``columns`` to a row (fewer when there are fewer images); each
    row of real images is followed by the row of their reconstructions, and a
    short last pair of rows is filled with black. Real pixels are ``x / 255``, so a PNG of the grid shows the
    inputs' own values.

    Args:
        model: a trained O-GAN.
        images: uint8 ``(N, C, S, S)`` real images.
        columns: images per row.
        padding: pixels between images (black).

    Returns:
        ``(3, H, W)`` (or ``(C, H, W)`` for colour) float grid in [0, 1] on the CPU.
    """
    from torchvision.utils import (
        make_grid,  # here: torchvision adds seconds to every CLI start
    )

    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    columns = min(columns, len(images))
    real = images.cpu().float() / 255  # (N, C, S, S)
    fake = reconstruct(model, images).add(1).div(2).clamp(0, 1).cpu()  # (N, C, S, S)
    rows = []
    for start in range(0, len(real), columns):
        for part in (real, fake):
            row = part[start : start + columns]
            rows.append(torch.cat([row, row.new_zeros(columns - len(row), *row.shape[1:])]))
    return make_grid(torch.cat(rows), nrow=columns, padding=padding)


def save_reconstructions(model: OGAN, images: Tensor, path: str | os.PathLike, columns: int = 10) -> Path:
    """Write :func:`reconstruction_grid` of uint8 ``(N, C, S, S)`` images to the PNG ``path``."""
    from torchvision.utils import (
        save_image,  # here: torchvision adds seconds to every CLI start
    )

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(reconstruction_grid(model, images, columns), path)
    return path


def save_reconstruction(
    run: str | os.PathLike,
    image_files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    columns: int = 10,
    device: str = "auto",
) -> Path:
    """Load an O-GAN run and write the reconstructions of image files to the PNG ``out``.

    The files are decoded and brought to the model's size and channels as training
    images are (:func:`dim.core.images.load_image`).

    Raises:
        ValueError: if the run is not an O-GAN run, no file is given, or a file is no readable image.
    """
    if not image_files:
        raise ValueError("give at least one image file to reconstruct")
    trained = load_run(run, device)
    if not isinstance(trained.model, OGAN):
        raise ValueError(f"{trained.path} is an InfoGAN run: reconstructions need an O-GAN run (its discriminator "
                         f"is the encoder); train one with --objective ogan")
    model = trained.model
    images = torch.stack([load_image(f, model.image_size, model.channels) for f in image_files])
    return save_reconstructions(model, images, out, columns)
