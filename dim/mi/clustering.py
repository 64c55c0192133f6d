"""Mutual information between the categorical assignments of paired inputs (IIC).

Ji, Henriques and Vedaldi, *Invariant Information Clustering for Unsupervised
Image Classification and Segmentation*, ICCV 2019, Eqs. (1)-(3).

A classifier gives each of B images a distribution over K classes, and the same
for a transformed copy of each image. Over the batch, the joint of the two
assignments and its marginals are

    P_kl = (1/B) sum_b p_bk p'_bl,   then symmetrised: P <- (P + P^T) / 2   (K, K)
    P_k  = sum_l P_kl                 (rows and columns agree after symmetrising)

and the mutual information of the pair is computed exactly from them:

    I(c; c') = sum_{k,l} P_kl [ln P_kl - ln P_k - ln P_l]

It is at most ln K, reached when every image and its copy get the same
confident class and the classes are used equally often: no degenerate
one-cluster solution, which needs no negatives and no entropy weights.
"""

from __future__ import annotations

from torch import Tensor, nn

from dim.mi.bounds.base import BoundOutput


class PairedCategoricalMI(nn.Module):
    """I(c; c') of two categorical assignments of the same inputs, as IIC maximises it.

    Computed as in the module docstring, with ``ln`` taken of ``max(P, eps)`` so
    that empty cells contribute 0 and a finite gradient.

        loss = -I(c; c')
        mi   = I(c; c')        (nats, detached; at most ln K)

    Args:
        eps: floor inside the logarithms.

    Shapes:
        logits, paired_logits: ``(B, K)`` unnormalised class log-probabilities of
            the inputs and of their transformed copies, in the same order.
        output: ``loss`` and ``mi`` are scalars.
    """

    def __init__(self, eps: float = 1e-10) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = eps

    def forward(self, logits: Tensor, paired_logits: Tensor) -> BoundOutput:
        if logits.dim() != 2 or logits.shape[1] < 2:
            raise ValueError(f"logits must have shape (B, K) with K >= 2, got {tuple(logits.shape)}")
        if paired_logits.shape != logits.shape:
            raise ValueError(
                f"paired_logits must have the shape of logits {tuple(logits.shape)}, got {tuple(paired_logits.shape)}"
            )
        joint = logits.softmax(dim=1).T @ paired_logits.softmax(dim=1) / logits.shape[0]  # (K, K)
        joint = (joint + joint.T) / 2
        marginal = joint.sum(dim=1)  # (K,)
        log_joint, log_marginal = joint.clamp_min(self.eps).log(), marginal.clamp_min(self.eps).log()
        mi = (joint * (log_joint - log_marginal[:, None] - log_marginal[None, :])).sum()
        return BoundOutput(loss=-mi, mi=mi.detach())
