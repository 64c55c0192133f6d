"""InfoGAN's objective: the GAN game plus lambda times the variational bound L_I.

Chen et al., *InfoGAN*, NeurIPS 2016, Eq. (6):

    min_{G, Q} max_D  V_InfoGAN(D, G, Q) = V(D, G) - lambda * L_I(G, Q)

with the standard GAN value V (Goodfellow et al., 2014), G trained on the
non-saturating loss, and L_I from the shared MI module (:mod:`dim.mi`).

D scores the real and the fake batch in one concatenated pass (bigger matrix
products, one weight gradient instead of two to add), but its BatchNorm layers
normalise each half with its own batch statistics
(:func:`infogan.models.batch_norm`): exactly two separate passes, as in the
paper's code, so the fake half of the D step is normalised like the all-fake
batch of the G step. Plain BatchNorm on the concatenation would mix real and
fake statistics.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dim.mi import BoundOutput, CategoricalQBound, GaussianQBound, PairedCategoricalMI
from infogan.codes import Latent, LatentSpec, QParams
from infogan.models import InfoGAN


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


class GeneratorObjective(NamedTuple):
    """What :meth:`InfoGANObjective.generator` returns.

    Attributes:
        total: the loss of the G + Q step: non-saturating loss + lambda * (-L_I)
            + lambda_invariance * invariance - lambda_iic * iic.
        adversarial: its non-saturating part.
        info: the information term, with L_I per code.
        invariance: Q's categorical cross-entropy on the warped fakes (``None`` when off).
        iic: IIC's I(c; c') in nats on real images and their warps (``None`` when off).
    """

    total: Tensor
    adversarial: Tensor
    info: InfoOutput
    invariance: Tensor | None
    iic: Tensor | None


class InfoGANObjective:
    """The losses of InfoGAN's two steps, with the optional invariance and IIC terms.

    The D step minimises the real/fake cross-entropy; when Q shares D's trunk it
    adds ``lambda_info * (-L_I)`` on the same fake features (the official code's
    ``discriminator_loss -= info_reg_coeff * mi_est``), so the info term also
    trains the shared trunk. The G + Q step minimises G's non-saturating loss
    plus ``lambda_info * (-L_I)``. With ``lambda_invariance > 0`` both steps add
    ``lambda_invariance`` times Q's categorical cross-entropy on a randomly warped
    copy of each fake; with ``lambda_iic > 0`` both subtract ``lambda_iic`` times
    IIC's I(c; c') between Q's categorical codes for real images and for their
    warps (:class:`dim.mi.PairedCategoricalMI`).

    Args:
        model: the networks (G, D and Q).
        spec: the latent space.
        lambda_info: weight of the information term (0: a plain GAN; L_I is still reported).
        lambda_cont: weight of the continuous codes' NLL relative to the categorical cross-entropy.
        lambda_invariance: weight of the invariance term (0: off).
        lambda_iic: weight of the IIC term (0: off).
    """

    def __init__(
        self,
        model: InfoGAN,
        spec: LatentSpec,
        lambda_info: float = 1.0,
        lambda_cont: float = 1.0,
        lambda_invariance: float = 0.0,
        lambda_iic: float = 0.0,
    ) -> None:
        self.model = model
        self.lambda_info = lambda_info
        self.lambda_invariance = lambda_invariance
        self.lambda_iic = lambda_iic
        self.info_loss = InfoLoss(spec, lambda_cont)
        self.iic = PairedCategoricalMI()

    def discriminator(
        self,
        real: Tensor,
        fake: Tensor,
        latent: Latent,
        warped: Tensor | None = None,
        real_warped: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """D's loss on ``(B, C, H, W)`` real and (detached) fake images.

        Args:
            warped: the (detached) randomly warped fakes when the invariance
                term is on; D's trunk then scores them as one more BatchNorm group.
            real_warped: the randomly warped real images when the IIC term is
                on; D's trunk reads them as one more group too.

        Returns:
            ``(total, adversarial)``: when Q shares D's trunk, ``total`` adds
            lambda * (-L_I) on the fakes' features (and the invariance and IIC
            terms), so the trunk learns the codes too.
        """
        batch_size = real.shape[0]
        extras = [images for images in (warped, real_warped) if images is not None]
        shared = not self.model.separate_q and (self.lambda_info > 0 or bool(extras))
        parts = [real, fake, *extras] if shared else [real, fake]
        logits, features = self.model.discriminate(torch.cat(parts), groups=len(parts))  # (nB,), (nB, 1024)
        adversarial = discriminator_loss(logits[:batch_size], logits[batch_size:2 * batch_size])
        if not shared:
            return adversarial, adversarial
        real_features, fake_features, *extra_features = features.split(batch_size)  # each (B, 1024)
        warped_features = extra_features[0] if warped is not None else None
        q_loss, _, _ = self._q_terms(fake, fake_features, latent, warped, warped_features)
        if real_warped is not None:
            iic = self._iic_mi(real, real_warped, (real_features, extra_features[-1]))
            q_loss = q_loss - self.lambda_iic * iic
        return adversarial + q_loss, adversarial

    def generator(
        self,
        fake: Tensor,
        latent: Latent,
        warped: Tensor | None = None,
        real: Tensor | None = None,
        real_warped: Tensor | None = None,
    ) -> GeneratorObjective:
        """G's (and Q's) loss on ``(B, C, H, W)`` generated images and the latents that made them.

        Args:
            warped: the same fakes randomly warped (not detached), when the invariance term is on.
            real: real images, when the IIC term is on. A shared trunk reads
                them without gradient (it is D's to train), so this step trains
                Q's head (or Q's own trunk) on them.
            real_warped: the randomly warped copies of ``real``, read the same way.
        """
        batch_size = fake.shape[0]
        real_features = None
        if real_warped is not None and not self.model.separate_q:
            with torch.no_grad():  # the trunk is D's to train: here Q's head learns from its features
                real_features = self.model.trunk(torch.cat([real, real_warped]), groups=2).split(batch_size)
        through_d = warped is not None and not self.model.separate_q  # Q reads the warped fakes through D's trunk
        parts = [fake, warped] if through_d else [fake]
        logits, features = self.model.discriminate(torch.cat(parts), groups=len(parts))  # (nB,), (nB, 1024)
        adversarial = generator_loss(logits[:batch_size])
        warped_features = features[batch_size:] if through_d else None  # else a separate Q trunk reads the images
        q_loss, info, invariance = self._q_terms(fake, features[:batch_size], latent, warped, warped_features)
        total, iic = adversarial + q_loss, None
        if real_warped is not None:
            iic = self._iic_mi(real, real_warped, real_features)
            total = total - self.lambda_iic * iic
        return GeneratorObjective(total, adversarial, info, invariance, iic)

    def _q_terms(
        self,
        fake: Tensor,
        fake_features: Tensor,
        latent: Latent,
        warped: Tensor | None,
        warped_features: Tensor | None,
    ) -> tuple[Tensor, InfoOutput, Tensor | None]:
        """``lambda * (-L_I) + lambda_invariance * invariance`` on D's features of the fakes (and warped fakes).

        Returns:
            ``(weighted sum, info, invariance)``; ``invariance`` is the categorical
            cross-entropy of Q on the warped fakes, ``None`` without them.
        """
        info = self.info_loss(self.model.recognize(fake, fake_features), latent)
        # lambda = 0 (a plain GAN) still reports L_I but leaves Q's weights without a gradient.
        total = self.lambda_info * info.loss if self.lambda_info else info.loss.new_zeros(())
        invariance = None
        if warped is not None:
            warped_q = self.model.recognize(warped, warped_features)
            invariance = self.info_loss.categorical_loss(warped_q, latent)
            total = total + self.lambda_invariance * invariance
        return total, info, invariance

    def _iic_mi(self, real: Tensor, real_warped: Tensor, features: tuple[Tensor, Tensor] | None) -> Tensor:
        """IIC's I(c; c') in nats between Q's categorical codes for real images and for their warps.

        Summed over the categorical codes; differentiable. ``features`` are D's
        trunk features of both batches when Q shares the trunk (else ``None``).
        """
        real_features, warped_features = (None, None) if features is None else features
        q_real = self.model.recognize(real, real_features)
        q_warped = self.model.recognize(real_warped, warped_features)
        return -torch.stack([self.iic(a, b).loss for a, b in zip(q_real.logits, q_warped.logits)]).sum()
