"""What every bound returns, and the shape checks they share."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class BoundOutput(NamedTuple):
    """A bound's result.

    Attributes:
        loss: scalar to minimise; gradients flow through it to the critic and
            to whatever produced its inputs.
        mi: the mutual-information estimate in nats, detached (a readout for
            logs and benchmarks, not something to backpropagate).
    """

    loss: Tensor
    mi: Tensor


def check_scores(positive: Tensor, negative: Tensor) -> None:
    """Validate the ``(positive, negative)`` score layout that all bounds take.

    ``positive`` is ``(B, *L)``: one score per sample (and per location for a
    local critic). ``negative`` is ``(B, K, *L)``: K negative scores for each
    positive, in the same locations. A location dimension of ``negative`` may
    be 1: its K scores are then the negatives of every location along it, as
    if repeated there (``(B, K, 1)`` against ``(B, L)``: one set of K negatives
    per row, see :class:`dim.mi.CrossLocationNegatives`). Every bound computes
    the same value from such a layout as from its repeated form.
    """
    if positive.dim() < 1:
        raise ValueError("positive scores must have shape (B, *L); got a scalar")
    if negative.dim() != positive.dim() + 1:
        raise ValueError(
            f"negative scores must have shape (B, K, *L) for positive scores of shape (B, *L); "
            f"got positive {tuple(positive.shape)} and negative {tuple(negative.shape)}"
        )
    lined_up = all(n in (1, p) for n, p in zip(negative.shape[2:], positive.shape[1:]))
    if negative.shape[0] != positive.shape[0] or not lined_up:
        raise ValueError(
            f"negative scores {tuple(negative.shape)} do not line up with positive scores {tuple(positive.shape)}: "
            "expected (B, K, *L) against (B, *L), with 1 for a location dimension whose negatives all locations share"
        )
    if negative.shape[1] < 1:
        raise ValueError("at least one negative score per positive is needed (K >= 1)")
