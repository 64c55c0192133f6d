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
