"""One MI term: a critic, a negative sampler and a bound composed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dim.mi.bounds import BoundOutput


class MIEstimator(nn.Module):
    """Estimate I(x; z) on a batch as ``bound(*negatives(critic, x, z))``.

    The bound runs in float32 with autocast off, whatever the critic's precision
    (e.g. bf16 under autocast): its log-sum-exps, softplus and means over
    thousands of scores would lose the estimate's precision in bf16. (The
    separable critics' score products are float32 too, see
    :class:`dim.mi.GlobalSeparableCritic`.)

    Example:
        >>> term = MIEstimator(LocalConcatCritic(128, 64), ShuffleNegatives(), JensenShannonBound())
        >>> loss, mi = term(feature_map, code)  # (B, 128, 8, 8), (B, 64)

    Args:
        critic: scores pairs (see :mod:`dim.mi.critics`).
        negatives: picks the pairs (see :mod:`dim.mi.negatives`).
        bound: turns scores into a loss and an estimate in nats (see :mod:`dim.mi.bounds`).
    """

    def __init__(self, critic: nn.Module, negatives: nn.Module, bound: nn.Module) -> None:
        super().__init__()
        self.critic = critic
        self.negatives = negatives
        self.bound = bound

    def forward(self, x: Tensor, z: Tensor) -> BoundOutput:
        positive, negative = self.negatives(self.critic, x, z)
        with torch.autocast(z.device.type, enabled=False):
            return self.bound(positive.float(), negative.float())
