"""InfoNCE (contrastive predictive coding) lower bound on mutual information.

van den Oord et al., *Representation Learning with Contrastive Predictive
Coding*, 2018; Poole et al., *On Variational Bounds of MI*, ICML 2019, eq. 13.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dim.mi.bounds.base import BoundOutput, check_scores


class InfoNCEBound(nn.Module):
    """I(X; Z) >= E[ log( exp(T_pos) / ((1/(K+1)) (exp(T_pos) + sum_k exp(T_neg_k))) ) ].

    Each positive is classified against its K negatives with a softmax:

        N[b,l] = logsumexp_k T_neg[b,k,l]
        mi     = mean_{b,l} [ T_pos[b,l] - logaddexp(T_pos[b,l], N[b,l]) ] + log(K + 1)
        loss   = -mi

    (``logaddexp(T_pos, N)`` is ``logsumexp(T_pos, T_neg[1..K])``), so the
    estimate can never exceed log(K + 1). With all in-batch pairs as negatives
    (K = B - 1) that is the familiar log B ceiling: the bound is low variance
    but saturates at log B. Local scores average over locations; negatives
    shared by the locations of a row (a location dimension of 1) have their
    log-sum-exp ``N`` computed once per row.

    Args:
        require_all_pairs: if True (default), refuse score layouts with fewer
            than B - 1 negatives per positive: InfoNCE with a single shuffled
            negative is capped at log 2 and is almost never what was meant.

    Shapes:
        positive: ``(B, *L)`` scores of positive pairs.
        negative: ``(B, K, *L)`` scores of K negative pairs per positive; a
            location dimension of 1 shares its K negatives among the locations
            (see :func:`~dim.mi.bounds.check_scores`).
    """

    def __init__(self, require_all_pairs: bool = True) -> None:
        super().__init__()
        self.require_all_pairs = require_all_pairs

    def forward(self, positive: Tensor, negative: Tensor) -> BoundOutput:
        check_scores(positive, negative)
        batch, num_negatives = negative.shape[:2]
        if self.require_all_pairs and num_negatives < batch - 1:
            raise ValueError(
                f"InfoNCE needs all in-batch pairs as negatives (K = B - 1 = {batch - 1}), got K = {num_negatives}; "
                "use AllPairsNegatives (--negatives all), or pass require_all_pairs=False to accept a log(K+1) cap"
            )
        negatives = torch.logsumexp(negative, dim=1)  # (B, *L), 1 where the locations share their negatives
        log_ratio = positive - torch.logaddexp(positive, negatives)  # (B, *L)
        mi = log_ratio.mean() + math.log(num_negatives + 1)
        return BoundOutput(loss=-mi, mi=mi.detach())
