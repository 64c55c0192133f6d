"""InfoGAN's objective (the GAN game plus lambda times the variational bound L_I), and O-GAN's.

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

O-GAN (Su, arXiv 1903.01931; :class:`OGANObjective`) plays the same game on
D's mean output ``avg(E(x))`` and adds ``-lambda * corr(z, E(G(z)))``
(:func:`pearson_correlation`) to both steps.

Both objectives implement one interface, :class:`GANObjective`: the trainer
(:class:`infogan.train.Trainer`) draws a :class:`GANBatch` each iteration and
calls :meth:`GANObjective.discriminator_step`, then
:meth:`GANObjective.generator_step`, and knows nothing else of either
objective. :func:`build_objective` picks the objective a run's settings name.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dim.mi import BoundOutput, CategoricalQBound, GaussianQBound, PairedCategoricalMI
from infogan.augment import random_affine
from infogan.codes import Latent, LatentSpec, QParams
from infogan.config import TrainConfig
from infogan.models import OGAN, InfoGAN


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """D's cross-entropy: ``-E log D(x) - E log(1 - D(G(z)))`` from ``(B,)`` logits, in softplus form."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor) -> Tensor:
    """G's non-saturating loss ``-E log D(G(z))`` from ``(B,)`` logits of generated images."""
    return F.softplus(-fake_logits).mean()


def pearson_correlation(x: Tensor, y: Tensor, eps: float = 1e-12) -> Tensor:
    """Pearson correlation between each row of ``x`` and the same row of ``y``, over the dimensions.

    O-GAN's correlation term (Su, arXiv 1903.01931, and its code): with
    ``D`` dimensions, per sample ``i``

        x'_i = x_i - (1/D) sum_d x_id,        y'_i = y_i - (1/D) sum_d y_id
        rho_i = < x'_i / max(||x'_i||, eps),  y'_i / max(||y'_i||, eps) >

    i.e. mean-centred over the dimensions, L2-normalised (as
    :func:`torch.nn.functional.normalize`), and the dot product of the two.
    ``rho_i`` lies in [-1, 1] and does not change when row ``i`` of either
    argument is scaled by a positive factor or shifted by a constant, so
    maximising it leaves the mean of ``E(x)`` (D's real/fake score) free.

    A measure of linear dependence, not a bound on mutual information: it reads
    in [-1, 1], not in nats (see docs/ogan.md).

    Shapes:
        x, y: ``(B, D)`` with ``D >= 2`` -> ``(B,)``. Average over the batch for the loss.
    """
    if x.dim() != 2 or x.shape != y.shape or x.shape[1] < 2:
        raise ValueError(f"x and y must both be (B, D) with D >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    x = F.normalize(x - x.mean(dim=1, keepdim=True), dim=1, eps=eps)  # (B, D)
    y = F.normalize(y - y.mean(dim=1, keepdim=True), dim=1, eps=eps)  # (B, D)
    return (x * y).sum(dim=1)


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


class GANBatch(NamedTuple):
    """One training iteration's inputs to both steps of a :class:`GANObjective`.

    Attributes:
        real: ``(B, C, H, W)`` real images in [-1, 1].
        latent: the latents G read, ``B`` of them (:class:`infogan.codes.Latent`).
        fake: ``(B, C, H, W)`` images ``G(latent)`` in [-1, 1], with G's graph
            attached (the D step detaches them).
    """

    real: Tensor
    latent: Latent
    fake: Tensor


class StepLoss(NamedTuple):
    """What each step of a :class:`GANObjective` returns.

    Attributes:
        loss: the scalar the step's optimiser minimises.
        values: ``(n,)`` detached statistics of the step, on the device; the D
            step's values followed by the G step's are named by
            :attr:`GANObjective.metric_names`.
    """

    loss: Tensor
    values: Tensor


@runtime_checkable
class GANObjective(Protocol):
    """The interface between :class:`infogan.train.Trainer` and an objective: the losses of a GAN's two steps.

    Each iteration the trainer draws a :class:`GANBatch`, minimises
    :meth:`discriminator_step`'s loss over D's parameters, then
    :meth:`generator_step`'s over G's (and Q's), which reads D as the first
    step left it. It sums the steps' values on the device, reads their means
    every ``log_every`` steps under :attr:`metric_names`, and shows
    :meth:`summary` of them on the progress bar. :class:`InfoGANObjective` and
    :class:`OGANObjective` implement it.
    """

    @property
    def metric_names(self) -> list[str]:
        """The names of the D step's values, then of the G step's: the first two are ``d_loss`` and ``g_loss``."""
        ...

    def discriminator_step(self, batch: GANBatch) -> StepLoss:
        """D's loss and values on one batch; no gradient reaches G."""
        ...

    def generator_step(self, batch: GANBatch) -> StepLoss:
        """G's loss (with Q's, if any) and values on the same batch."""
        ...

    def summary(self, means: dict[str, float]) -> str:
        """A short text of the window's mean values (keyed by :attr:`metric_names`) for the progress bar."""
        ...


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
    warps (:class:`dim.mi.PairedCategoricalMI`). Each step draws its own random
    warps (:func:`infogan.augment.random_affine`).

    Args:
        model: the networks (G, D and Q) and their latent space ``model.spec``.
        lambda_info: weight of the information term (0: a plain GAN; L_I is still reported).
        lambda_cont: weight of the continuous codes' NLL relative to the categorical cross-entropy.
        lambda_invariance: weight of the invariance term (0: off).
        lambda_iic: weight of the IIC term (0: off).
    """

    def __init__(
        self,
        model: InfoGAN,
        lambda_info: float = 1.0,
        lambda_cont: float = 1.0,
        lambda_invariance: float = 0.0,
        lambda_iic: float = 0.0,
    ) -> None:
        self.model = model
        self.spec = model.spec
        self.lambda_info = lambda_info
        self.lambda_invariance = lambda_invariance
        self.lambda_iic = lambda_iic
        self.info_loss = InfoLoss(model.spec, lambda_cont)
        self.iic = PairedCategoricalMI()

    @property
    def metric_names(self) -> list[str]:
        """The D step's ``d_loss``, then the G step's values: ``g_loss``, ``info_loss``, ``mi_c1``, ...

        and ``invariance_loss`` and ``iic_mi`` when those terms are on: the
        columns of ``metrics.csv`` (before ``it_per_s``).
        """
        names = ["d_loss", "g_loss", "info_loss", *(f"mi_{name}" for name in self.spec.code_names)]
        names += ["invariance_loss"] if self.lambda_invariance else []
        return names + (["iic_mi"] if self.lambda_iic else [])

    def discriminator_step(self, batch: GANBatch) -> StepLoss:
        """D's step (:meth:`discriminator` on the detached fakes, with fresh warps when the extra terms are on).

        Its value: D's adversarial loss, ``(1,)``.
        """
        fake = batch.fake.detach()  # (B, C, H, W): this step trains D alone
        warped = random_affine(fake) if self.lambda_invariance else None  # (B, C, H, W)
        real_warped = random_affine(batch.real) if self.lambda_iic else None  # (B, C, H, W)
        total, adversarial = self.discriminator(batch.real, fake, batch.latent, warped, real_warped)
        return StepLoss(total, adversarial.detach().reshape(1))

    def generator_step(self, batch: GANBatch) -> StepLoss:
        """G's and Q's step (:meth:`generator`, with fresh warps when the extra terms are on).

        Its values, ``(2 + num_codes [+ 1] [+ 1],)``: G's adversarial loss, the
        information loss, L_I per code in nats, then the invariance
        cross-entropy and IIC's I(c; c') when those terms are on.
        """
        warped = random_affine(batch.fake) if self.lambda_invariance else None  # (B, C, H, W), through to G
        real, real_warped = (batch.real, random_affine(batch.real)) if self.lambda_iic else (None, None)
        g = self.generator(batch.fake, batch.latent, warped, real, real_warped)
        values = [torch.stack([g.adversarial, g.info.loss]).detach(), g.info.mi]
        values += [term.detach().reshape(1) for term in (g.invariance, g.iic) if term is not None]
        return StepLoss(g.total, torch.cat(values))

    def summary(self, means: dict[str, float]) -> str:
        """The progress bar's text: D and G losses and L_I per code in nats."""
        codes = " ".join(f"{name}={means[f'mi_{name}']:.2f}" for name in self.spec.code_names)
        return f"D={means['d_loss']:.3f} G={means['g_loss']:.3f} L_I[nats] {codes}"

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


class OGANGeneratorObjective(NamedTuple):
    """What :meth:`OGANObjective.generator` returns.

    Attributes:
        total: the loss of the G step: ``adversarial - lambda_corr * correlation``.
        adversarial: G's non-saturating loss on the mean score, ``softplus(-avg(E(G(z))))`` averaged.
        correlation: ``corr(z, E(G(z)))`` averaged over the batch (:func:`pearson_correlation`), in [-1, 1].
    """

    total: Tensor
    adversarial: Tensor
    correlation: Tensor


class OGANObjective:
    """O-GAN's losses (Su, arXiv 1903.01931): the standard GAN on the mean score, plus the correlation term.

    D outputs ``E(x)``, ``(B, noise_dim)``, and its score is ``avg(E(x))``, the
    mean over the dimensions, used as the logit of the standard GAN. With
    ``rho = mean_i corr(z_i, E(G(z_i)))`` (:func:`pearson_correlation`), both
    steps subtract ``lambda_corr * rho``:

        D step:  mean softplus(-avg E(x)) + mean softplus(avg E(G(z))) - lambda_corr * rho   (G(z) detached)
        G step:  mean softplus(-avg E(G(z)))                          - lambda_corr * rho

    so E learns to read z back from G(z) and G learns to make z readable. The
    paper's code trains GAN-QP with ``lambda = 0.5``; this objective keeps
    InfoGAN's standard (non-saturating) GAN loss, so the two objectives of this
    package differ only in D's head and the extra term.

    Args:
        model: G and the encoder-discriminator E.
        lambda_corr: weight of the correlation term (0: a plain GAN with a mean-score head).
    """

    def __init__(self, model: OGAN, lambda_corr: float = 0.5) -> None:
        if lambda_corr < 0:
            raise ValueError(f"lambda_corr must be >= 0, got {lambda_corr}")
        self.model = model
        self.lambda_corr = lambda_corr

    @property
    def metric_names(self) -> list[str]:
        """The D step's ``d_loss``, then the G step's ``g_loss`` and ``corr``: the columns of ``metrics.csv``."""
        return ["d_loss", "g_loss", "corr"]

    def discriminator(self, real: Tensor, fake: Tensor, latent: Latent) -> tuple[Tensor, Tensor]:
        """D's loss on ``(B, C, H, W)`` real and (detached) fake images made from ``latent``.

        Args:
            real: ``(B, C, H, W)`` real images.
            fake: ``(B, C, H, W)`` generated images, detached.
            latent: the latents that made ``fake``; only the noise is read.

        Returns:
            ``(total, adversarial)``: ``total`` is ``adversarial - lambda_corr * rho``.
        """
        batch_size = real.shape[0]
        scores, codes = self.model.discriminate(torch.cat([real, fake]), groups=2)  # (2B,), (2B, noise_dim)
        adversarial = discriminator_loss(scores[:batch_size], scores[batch_size:])
        correlation = pearson_correlation(latent.noise, codes[batch_size:]).mean()
        return adversarial - self.lambda_corr * correlation, adversarial

    def generator(self, fake: Tensor, latent: Latent) -> OGANGeneratorObjective:
        """G's loss on ``(B, C, H, W)`` generated images and the latents that made them."""
        scores, codes = self.model.discriminate(fake)  # (B,), (B, noise_dim)
        adversarial = generator_loss(scores)
        correlation = pearson_correlation(latent.noise, codes).mean()
        return OGANGeneratorObjective(adversarial - self.lambda_corr * correlation, adversarial, correlation)

    def discriminator_step(self, batch: GANBatch) -> StepLoss:
        """D's step: :meth:`discriminator` on the detached fakes; its value is D's adversarial loss, ``(1,)``."""
        total, adversarial = self.discriminator(batch.real, batch.fake.detach(), batch.latent)
        return StepLoss(total, adversarial.detach().reshape(1))

    def generator_step(self, batch: GANBatch) -> StepLoss:
        """G's step: :meth:`generator`; its values are G's adversarial loss and rho, ``(2,)``."""
        g = self.generator(batch.fake, batch.latent)
        return StepLoss(g.total, torch.stack([g.adversarial, g.correlation]).detach())

    def summary(self, means: dict[str, float]) -> str:
        """The progress bar's text: D and G losses and corr(z, E(G(z)))."""
        return f"D={means['d_loss']:.3f} G={means['g_loss']:.3f} corr(z,E(G(z)))={means['corr']:.3f}"


def build_objective(config: TrainConfig, model: InfoGAN | OGAN) -> GANObjective:
    """The objective of a resolved ``config`` for the networks :func:`infogan.models.build_model` built from it.

    :class:`OGANObjective` (weight ``lambda_corr``) for an :class:`~infogan.models.OGAN`,
    else :class:`InfoGANObjective` (weights ``lambda_info``, ``lambda_cont``,
    ``lambda_invariance`` and ``lambda_iic``).
    """
    if isinstance(model, OGAN):
        return OGANObjective(model, config.lambda_corr)
    return InfoGANObjective(model, config.lambda_info, config.lambda_cont, config.lambda_invariance, config.lambda_iic)
