"""InfoGAN's objective: the GAN game plus lambda times the variational bound L_I.

Chen et al., *InfoGAN*, NeurIPS 2016, Eq. (6):

    min_{G, Q} max_D  V_InfoGAN(D, G, Q) = V(D, G) - lambda * L_I(G, Q)

with the standard GAN value V (Goodfellow et al., 2014), G trained on the
non-saturating loss, and L_I from the shared MI module (:mod:`dim.mi`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dim.mi import BoundOutput, CategoricalQBound, GaussianQBound
from infogan.codes import Latent, LatentSpec, QParams


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """D's cross-entropy: ``-E log D(x) - E log(1 - D(G(z)))`` from ``(B,)`` logits, in softplus form."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor) -> Tensor:
    """G's non-saturating loss ``-E log D(G(z))`` from ``(B,)`` logits of generated images."""
    return F.softplus(-fake_logits).mean()


class InfoOutput(NamedTuple):
    """The information term.

    Attributes:
        loss: scalar to minimise: the categorical cross-entropies plus
            ``lambda_cont`` times the continuous codes' Gaussian NLL (= -L_I up to constants).
        mi: ``(num_codes,)`` detached L_I per code in nats, in the order ``c1, c2, ...``.
    """

    loss: Tensor
    mi: Tensor


class InfoLoss(nn.Module):
    """-L_I(G, Q) for all codes, built from :class:`dim.mi.CategoricalQBound` and :class:`dim.mi.GaussianQBound`.

    Args:
        spec: the latent space whose codes Q predicts.
        lambda_cont: weight of the continuous codes relative to the categorical ones.
    """

    def __init__(self, spec: LatentSpec, lambda_cont: float = 1.0) -> None:
        super().__init__()
        if lambda_cont < 0:
            raise ValueError(f"lambda_cont must be >= 0, got {lambda_cont}")
        self.lambda_cont = lambda_cont
        self.categorical = nn.ModuleList(CategoricalQBound(k) for k in spec.categorical)
        self.continuous = GaussianQBound() if spec.continuous else None

    def forward(self, q: QParams, latent: Latent) -> InfoOutput:
        """Score Q's prediction ``q`` against the codes ``latent`` that generated the images."""
        outs = self._categorical(q, latent)
        losses, mis = [out.loss for out in outs], [out.mi.reshape(1) for out in outs]
        if self.continuous is not None:
            out = self.continuous(q.mean, latent.continuous, q.log_sigma)  # scalar loss, mi (D,)
            losses.append(self.lambda_cont * out.loss)
            mis.append(out.mi)
        return InfoOutput(loss=torch.stack(losses).sum(), mi=torch.cat(mis))

    def categorical_loss(self, q: QParams, latent: Latent) -> Tensor:
        """The categorical codes' cross-entropies alone, summed (the invariance term scores warped fakes with it).

        Continuous codes are left out on purpose: a warp changes slant and width,
        the very factors they should describe.
        """
        return torch.stack([out.loss for out in self._categorical(q, latent)]).sum()

    def _categorical(self, q: QParams, latent: Latent) -> list[BoundOutput]:
        """One :class:`dim.mi.BoundOutput` (scalar loss and mi) per categorical code."""
        return [bound(q.logits[i], latent.categorical[:, i]) for i, bound in enumerate(self.categorical)]
