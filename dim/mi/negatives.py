"""Negative samplers: which (x, z) pairs a critic scores, and which of them are positives.

A sampler calls a critic and returns ``(positive, negative)`` scores in the
layout every bound takes: ``positive`` is ``(B, *L)`` with ``T(x_i, z_i)``,
``negative`` is ``(B, K, *L)`` with K scores ``T(x_j, z_i)``, j != i, per row.
A location dimension of ``negative`` may be 1 instead: its K negatives then
serve every location of the row (:class:`CrossLocationNegatives` returns
``(B, K, 1)`` for local scores), and the bounds broadcast it
(:func:`dim.mi.bounds.check_scores`).
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


def _split_all_pairs(critic: nn.Module, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """Score all pairs and split them into the diagonal ``(B, *L)`` and each row's off-diagonal ``(B, B - 1, *L)``."""
    batch = z.shape[0]
    if batch < 2:
        raise ValueError(f"negative sampling needs a batch of at least 2 samples, got {batch}")
    scores = critic(x, z)  # (B, B, *L)
    positive = scores.diagonal(dim1=0, dim2=1).movedim(-1, 0)  # (B, *L)
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=scores.device)
    negative = scores[off_diagonal].view(batch, batch - 1, *scores.shape[2:])  # (B, B - 1, *L)
    return positive, negative


class AllPairsNegatives(nn.Module):
    """All in-batch pairs (the DIM paper): every off-diagonal entry is a negative.

    Scores the full matrix ``critic(x, z)`` of shape ``(B, B, *L)`` and splits
    it into the diagonal ``(B, *L)`` and the ``B - 1`` off-diagonal entries of
    each row ``(B, B - 1, *L)``: position l of image i is classified against
    position l of every other image.
    """

    def forward(self, critic: nn.Module, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        return _split_all_pairs(critic, x, z)


class CrossLocationNegatives(nn.Module):
    """Every position of every other image: the DIM paper's local infoNCE (Hjelm et al., ICLR 2019).

    With ``s[i, j, l] = T(C_l(x_j), z_i)`` from the critic's all-pairs scores
    ``(B, B, *L)``, the positive of row i at position l is ``s[i, i, l]`` and
    its negatives are all ``s[i, j, l']`` with ``j != i`` and any position
    ``l'``: ``K = (B - 1) * prod(L)`` negatives, the same for every position of
    the row. They are returned once per row, broadcastable over the positions,
    so nothing of size ``B * K * prod(L)`` is built:

        positive[i, l]            = s[i, i, l]                     (B, *L)
        negative[i, (j, l'), 1..] = s[i, j, l'],  j != i           (B, (B - 1) * prod(L), 1, ..., 1)

    With InfoNCE (:class:`dim.mi.InfoNCEBound`) this is the paper's local
    objective: each row's log-sum-exp over its negatives is computed once and

        mi = mean_{i,l} [ s[i,i,l] - logaddexp(s[i,i,l], logsumexp_{j != i, l'} s[i,j,l']) ]
             + log(1 + (B - 1) * prod(L))

    The negatives are then drawn from the features of *any* position of
    another image, rather than of the same position. Bounds that only average
    over negatives (``jsd``, ``nwj``) see the same set of scores as with
    :class:`AllPairsNegatives`, so their values are the same; ``dv`` and
    ``infonce`` differ (one normaliser per row rather than per position).
    For global scores ``(B, B)`` (no ``L``) this is exactly
    :class:`AllPairsNegatives`: ``negative`` is ``(B, B - 1)``.
    """

    def forward(self, critic: nn.Module, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        positive, negative = _split_all_pairs(critic, x, z)  # (B, *L), (B, B - 1, *L)
        shared = [1] * (positive.dim() - 1)  # one size-1 dimension per location dimension
        return positive, negative.reshape(positive.shape[0], -1, *shared)  # (B, (B - 1) * prod(L), 1, ..., 1)
