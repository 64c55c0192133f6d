"""The Donsker-Varadhan lower bound on mutual information (as used by MINE).

Donsker & Varadhan, *Asymptotic evaluation of certain Markov process
expectations for large time*, 1983; Belghazi et al., *MINE*, ICML 2018.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dim.mi.bounds.base import BoundOutput, check_scores


class DonskerVaradhanBound(nn.Module):
    """I(X; Z) >= E_pos[ T ] - log E_neg[ exp(T) ].

    Computed per location l (one estimation problem per location of a local
    critic; global scores have a single location) and averaged:

        mi_l = mean_b T_pos[b, l] - ( logsumexp_{b,k} T_neg[b, k, l] - log(B K) )
        mi   = mean_l mi_l,        loss = -mi

    The bound is tight at T* = log p(x, z) / (p(x) p(z)) + const. Its gradient
    through the log of a batch mean is biased (MINE corrects this with a moving
    average; we keep the plain, widely used form).

    Shapes:
        positive: ``(B, *L)`` scores of positive pairs.
        negative: ``(B, K, *L)`` scores of K negative pairs per positive; a
            location dimension of 1 shares its K negatives among the locations
            (see :func:`~dim.mi.bounds.check_scores`).
    """

    def forward(self, positive: Tensor, negative: Tensor) -> BoundOutput:
        check_scores(positive, negative)
        batch, num_negatives = negative.shape[:2]
        log_mean_exp = torch.logsumexp(negative.flatten(0, 1), dim=0) - math.log(batch * num_negatives)  # (*L)
        mi = (positive.mean(dim=0) - log_mean_exp).mean()
        return BoundOutput(loss=-mi, mi=mi.detach())
