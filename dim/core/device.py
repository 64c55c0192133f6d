"""Where to run and how to seed: device choice (CUDA, then MPS, then CPU) and RNG seeding."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch


def select_device(name: str = "auto") -> torch.device:
    """Return the device to run on.

    Args:
        name: ``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else
            (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is taken as given.

    Raises:
        ValueError: if the requested accelerator is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was requested but MPS is not available; use --device auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def adam(params: Iterable[torch.nn.Parameter], device: torch.device, **options: Any) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the fused kernel where torch has one for ``device`` (CPU and CUDA).

    The fused kernel updates every parameter in one pass instead of a loop of
    small ones. ``options`` are Adam's (``lr``, ``betas``, ...).
    """
    return torch.optim.Adam(params, fused=True if device.type in ("cpu", "cuda") else None, **options)


# Number formats of the matrix work in training and embedding; for "auto" see autocast().
PRECISIONS = ("auto", "fp32", "bf16")


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` has native bf16 matrix units: CUDA with bf16 support, or a CPU with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether a training or embedding step on ``device`` runs in bf16 under ``precision`` (see :func:`autocast`).

    Raises:
        ValueError: for an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and bf16_is_fast(device))


def autocast(device: torch.device, precision: str = "auto") -> torch.autocast:
    """The autocast context of a training or embedding step: bf16 for ``bf16``, fp32 for ``fp32``.

    ``auto`` is bf16 wherever bf16 is fast (:func:`bf16_is_fast`: CUDA, or a CPU with
    AVX-512 BF16 or AMX), fp32 elsewhere. Autocast runs the encoder's convolutions and
    linear layers in bf16; the critics' score products and every bound turn it off
    and compute in fp32 (:mod:`dim.mi.critics`, :class:`dim.mi.MIEstimator`), the
    mixed precision of GPU training. Measured on an AVX-512 BF16 CPU, the best DIM
    recipe trained 1.6 times as many images a second in bf16 and reached a higher kNN
    accuracy at equal time, and bf16 embedded faster at the same accuracy (the figures
    are in ``benchmarks/RESULTS.md``).

    Args:
        device: where the step runs.
        precision: one of :data:`PRECISIONS`.

    Raises:
        ValueError: for an unknown precision.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))
