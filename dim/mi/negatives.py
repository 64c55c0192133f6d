"""Negative samplers: which (x, z) pairs a critic scores, and which of them are positives.

A sampler calls a critic and returns ``(positive, negative)`` scores in the
layout every bound takes: ``positive`` is ``(B, *L)`` with ``T(x_i, z_i)``,
``negative`` is ``(B, K, *L)`` with K scores ``T(x_j, z_i)``, j != i, per row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def random_derangement(batch_size: int, device: torch.device | str | None = None) -> Tensor:
    """A random permutation with no fixed point: ``perm[i] != i`` for every i.

    Built as one random cycle through all B indices (shuffle the indices, then
    send each to the next in the shuffled order), so every i is paired with a
    uniformly random other index.

    Shapes: the result is ``(B,)`` int64.
    """
    if batch_size < 2:
        raise ValueError(f"negative sampling needs a batch of at least 2 samples, got {batch_size}")
    order = torch.randperm(batch_size, device=device)
    perm = torch.empty_like(order)
    perm[order] = order.roll(-1)
    return perm


class ShuffleNegatives(nn.Module):
    """In-batch shuffle (Su Jianlin, "深度学习的互信息：无监督提取特征", kexue.fm/archives/6024, 2018).

    The positive of row i is ``T(x_i, z_i)``; each of its K negatives is
    ``T(x_{perm(i)}, z_i)`` for a fresh random derangement perm: the same code
    with another sample's input. Only the ``B * (1 + K)`` requested pairs are
    scored (``critic.pairs``), never all ``B * B``.

    Args:
        num_negatives: K, shuffled negatives per positive.
    """

    def __init__(self, num_negatives: int = 1) -> None:
        super().__init__()
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        self.num_negatives = num_negatives

    def forward(self, critic: nn.Module, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        batch = z.shape[0]
        columns = [torch.arange(batch, device=z.device)]
        columns += [random_derangement(batch, z.device) for _ in range(self.num_negatives)]
        scores = critic.pairs(x, z, torch.stack(columns, dim=1))  # (B, 1 + K, *L)
        return scores[:, 0], scores[:, 1:]


class AllPairsNegatives(nn.Module):
    """All in-batch pairs (the DIM paper): every off-diagonal entry is a negative.

    Scores the full matrix ``critic(x, z)`` of shape ``(B, B, *L)`` and splits
    it into the diagonal ``(B, *L)`` and the ``B - 1`` off-diagonal entries of
    each row ``(B, B - 1, *L)``.
    """

    def forward(self, critic: nn.Module, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        batch = z.shape[0]
        if batch < 2:
            raise ValueError(f"negative sampling needs a batch of at least 2 samples, got {batch}")
        scores = critic(x, z)  # (B, B, *L)
        positive = scores.diagonal(dim1=0, dim2=1).movedim(-1, 0)  # (B, *L)
        off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=scores.device)
        negative = scores[off_diagonal].view(batch, batch - 1, *scores.shape[2:])  # (B, B - 1, *L)
        return positive, negative
