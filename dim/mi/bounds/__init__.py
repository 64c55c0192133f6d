"""Bounds: turn ``(positive, negative)`` critic scores into a loss and an MI estimate in nats."""

from __future__ import annotations

from torch import nn

from dim.mi.bounds.base import BoundOutput, check_scores
from dim.mi.bounds.donsker_varadhan import DonskerVaradhanBound
from dim.mi.bounds.infonce import InfoNCEBound
from dim.mi.bounds.jensen_shannon import JensenShannonBound
from dim.mi.bounds.nwj import NWJBound

BOUNDS: dict[str, type[nn.Module]] = {
    "jsd": JensenShannonBound,
    "infonce": InfoNCEBound,
    "dv": DonskerVaradhanBound,
    "nwj": NWJBound,
}


def make_bound(name: str) -> nn.Module:
    """Build a bound by its short name: ``jsd``, ``infonce``, ``dv`` or ``nwj``."""
    if name not in BOUNDS:
        raise ValueError(f"unknown MI bound {name!r}; choose one of {', '.join(BOUNDS)}")
    return BOUNDS[name]()


__all__ = [
    "BOUNDS",
    "BoundOutput",
    "DonskerVaradhanBound",
    "InfoNCEBound",
    "JensenShannonBound",
    "NWJBound",
    "check_scores",
    "make_bound",
]
