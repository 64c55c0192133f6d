"""The NWJ (f-divergence, "MINE-f") lower bound on mutual information.

Nguyen, Wainwright & Jordan, *Estimating divergence functionals and the
likelihood ratio by convex risk minimization*, IEEE Trans. Inf. Theory 2010;
as written in Poole et al., *On Variational Bounds of MI*, ICML 2019, eq. 12.
"""

from __future__ import annotations

from torch import Tensor, nn

from dim.mi.bounds.base import BoundOutput, check_scores


class NWJBound(nn.Module):
    """I(X; Z) >= E_pos[ T ] - E_neg[ exp(T - 1) ].

    Computed as

        mi   = E_pos[ T ] - E_neg[ exp(T - 1) ]
        loss = -mi

    with means over all samples (and locations, for local scores). The bound
    is tight at T* = 1 + log p(x, z) / (p(x) p(z)); it is unbiased in its
    gradients but its variance grows like exp(I).

    Shapes:
        positive: ``(B, *L)`` scores of positive pairs.
        negative: ``(B, K, *L)`` scores of K negative pairs per positive; a
            location dimension of 1 shares its K negatives among the locations
            (see :func:`~dim.mi.bounds.check_scores`).
    """

    def forward(self, positive: Tensor, negative: Tensor) -> BoundOutput:
        check_scores(positive, negative)
        mi = positive.mean() - (negative - 1.0).exp().mean()
        return BoundOutput(loss=-mi, mi=mi.detach())
