"""Jensen-Shannon MI bound, the objective of DIM (see docs/mi.md).

Hjelm et al., *Learning deep representations by mutual information estimation
and maximization*, ICLR 2019, eq. 4; Nowozin et al., *f-GAN*, NeurIPS 2016.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dim.mi.bounds.base import BoundOutput, check_scores


class JensenShannonBound(nn.Module):
    """Negative-sampling loss with an MI readout in nats.

    The critic T is a binary classifier of positive pairs against negatives:

        loss = E_neg[ softplus(T) ] + E_pos[ softplus(-T) ]
             = -( E_pos[ log sigma(T) ] + E_neg[ log(1 - sigma(T)) ] )

    Its minimiser is T* = log p(x, z) / (p(x) p(z)), the pointwise MI, whatever
    the number of negatives. The JS divergence itself is not in nats, so the
    estimate reads the same scores through the NWJ bound at f = T + 1 (Poole et
    al., *On Variational Bounds of Mutual Information*, ICML 2019, Sec. 2.3):

        mi = 1 + E_pos[ T ] - E_neg[ exp(T) ]

    which equals I(X; Z) at T = T* and is a lower bound for any other T.
    Expectations are means over all samples (and locations, for local scores).

    Shapes:
        positive: ``(B, *L)`` scores of positive pairs.
        negative: ``(B, K, *L)`` scores of K negative pairs per positive; a
            location dimension of 1 shares its K negatives among the locations
            (see :func:`~dim.mi.bounds.check_scores`).
    """

    def forward(self, positive: Tensor, negative: Tensor) -> BoundOutput:
        check_scores(positive, negative)
        loss = F.softplus(negative).mean() + F.softplus(-positive).mean()
        mi = 1.0 + positive.detach().mean() - negative.detach().exp().mean()
        return BoundOutput(loss=loss, mi=mi)
