"""Training InfoGAN: alternate a D step and a G+Q step, with run directories and exact resume.

Chen et al., *InfoGAN*, NeurIPS 2016. One iteration, at batch size B:

1. Draw B real images and B latents (z, c); generate x_fake = G(z, c) once.
2. D step (Adam, lr 2e-4): the real/fake cross-entropy on x_real and x_fake
   (detached). With Q sharing D's trunk, lambda * (-L_I) on the same fake
   features is added, so the info term also trains the shared trunk, as in the
   official code (``discriminator_loss -= info_reg_coeff * mi_est``).
3. G+Q step (Adam, lr 1e-3): G's non-saturating loss through the updated D plus
   lambda * (-L_I), reusing x_fake from step 1. Only G, Q's head and a separate
   Q trunk receive gradients; D's weights get none (no wasted weight gradients).

With ``lambda_invariance > 0`` a randomly warped copy of x_fake
(:func:`infogan.augment.random_affine`) joins both steps, and Q's categorical
cross-entropy on it is added with that weight: Q must read c1 whatever the
slant, width and position, so those cannot carry c1. With ``lambda_iic > 0``
real images and warped copies of them join too, and Q is also trained to
maximise the mutual information between its c1 for an image and for the copy
(IIC, :class:`dim.mi.PairedCategoricalMI`): Q's codes must then group real
images confidently and consistently, not only tell the fakes apart.

D scores the real and the fake batch in one concatenated pass (bigger matrix
products, one weight gradient instead of two to add), but its BatchNorm layers
normalise each half with its own batch statistics
(:func:`infogan.models.batch_norm`): exactly two separate passes, as in the
paper's code, so the fake half of the D step is normalised like the all-fake
batch of the G step. Plain BatchNorm on the concatenation would mix real and
fake statistics.

The loop keeps the losses on the device and reads them back only every
``log_every`` steps (one sync), where it also checks for divergence.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm import tqdm

from dim.core.checkpoint import CHECKPOINT_FORMAT, atomic_save, load_checkpoint
from dim.core.device import seed_everything, select_device
from dim.core.images import normalize_images
from dim.core.runs import (
    MetricsLog,
    default_run_dir,
    rng_state,
    set_rng_state,
    write_config,
)
from dim.mi import PairedCategoricalMI
from infogan.augment import random_affine
from infogan.checkpoint import CHECKPOINT_KIND
from infogan.codes import Latent
from infogan.config import TrainConfig
from infogan.models import InfoGAN
from infogan.objective import InfoLoss, InfoOutput, discriminator_loss, generator_loss


class TrainingDiverged(RuntimeError):
    """Training stopped because a loss became NaN/inf or exploded; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did: the steps reached and the speed of the loop."""

    run_dir: Path | None
    step: int
    seconds: float
    it_per_s: float


class GeneratorObjective(NamedTuple):
    """What :meth:`Trainer.g_objective` returns.

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


def _update(optimizer: torch.optim.Optimizer, loss: Tensor, params: list[torch.nn.Parameter]) -> None:
    """One optimiser step on ``loss``, computing gradients for ``params`` only (others get none)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for param, grad in zip(params, grads):
        param.grad = grad
    optimizer.step()


class Trainer:
    """InfoGAN's training loop over an in-memory uint8 image tensor.

    Args:
        config: the run's settings.
        images: uint8 ``(N, C, H, W)`` training images; moved to the device
            once, and batches are drawn by indexing it there.
        run_dir: where to write metrics, samples and checkpoints; ``None``
            trains without writing anything (benchmarks).
        classes: the dataset's class names, kept in the checkpoint for evaluation.

    Construction seeds every RNG with ``config.seed`` (then builds the networks),
    so two trainers with the same config and device start identically.

    Example:
        >>> trainer = Trainer(TrainConfig(iterations=200), dataset.images, Path("runs/demo"))
        >>> trainer.fit()
    """

    def __init__(
        self,
        config: TrainConfig,
        images: Tensor,
        run_dir: Path | None = None,
        classes: list[str] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"images must be square, got {tuple(images.shape[-2:])}")
        self.config = config
        self.run_dir = run_dir
        self.classes = list(classes or [])
        self.device = select_device(config.device)
        seed_everything(config.seed)
        self.spec = config.latent_spec()
        channels, image_size = images.shape[1], images.shape[-1]
        self.model = InfoGAN(self.spec, channels, image_size, config.separate_q, config.learn_sigma).to(self.device)
        self.info_loss = InfoLoss(self.spec, config.lambda_cont)
        self.iic = PairedCategoricalMI()
        self.d_params = self.model.d_parameters()
        self.g_params = self.model.g_parameters()
        # The fused kernel: one pass over the ~14 M parameters instead of a dozen (a third of the CPU step's Adam time).
        adam = {"betas": (config.beta1, config.beta2), "fused": self.device.type in ("cpu", "cuda") or None}
        self.opt_d = torch.optim.Adam(self.d_params, lr=config.lr_d, **adam)
        self.opt_g = torch.optim.Adam(self.g_params, lr=config.lr_g, **adam)
        self.images = images.to(self.device)
        self.step = 0
        self.last_checkpoint_step: int | None = None
        self.fixed_latent = self.spec.traversal(self.spec.code_names[0], columns=10, seed=config.seed)

    # -- the objective -------------------------------------------------------------------

    def d_objective(
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
        shared = not self.model.separate_q and (self.config.lambda_info > 0 or bool(extras))
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
            q_loss = q_loss - self.config.lambda_iic * iic
        return adversarial + q_loss, adversarial

    def g_objective(
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
            real, real_warped: real images and their warps, when the IIC term is on.
                A shared trunk reads them without gradient (it is D's to train),
                so this step trains Q's head (or Q's own trunk) on them.
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
            total = total - self.config.lambda_iic * iic
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
        total = self.config.lambda_info * info.loss if self.config.lambda_info else info.loss.new_zeros(())
        invariance = None
        if warped is not None:
            warped_q = self.model.recognize(warped, warped_features)
            invariance = self.info_loss.categorical_loss(warped_q, latent)
            total = total + self.config.lambda_invariance * invariance
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

    def train_step(self) -> Tensor:
        """One D step and one G+Q step.

        Returns:
            ``(3 + num_codes [+ 1] [+ 1],)`` detached tensor on the device: D loss,
            G loss (adversarial parts), information loss, L_I per code in nats,
            then the invariance cross-entropy and IIC's I(c; c') when those terms are on.
        """
        batch_size = self.config.batch_size
        index = torch.randint(len(self.images), (batch_size,), device=self.device)
        real = normalize_images(self.images[index])  # (B, C, H, W) in [-1, 1]
        latent = self.spec.sample(batch_size, self.device)
        fake = self.model.generator(self.spec.generator_input(latent))  # (B, C, H, W)
        warped = random_affine(fake) if self.config.lambda_invariance else None  # (B, C, H, W)
        real_warped = random_affine(real) if self.config.lambda_iic else None  # (B, C, H, W)

        detached = None if warped is None else warped.detach()
        d_total, d_adversarial = self.d_objective(real, fake.detach(), latent, detached, real_warped)
        _update(self.opt_d, d_total, self.d_params)
        g = self.g_objective(fake, latent, warped, real, real_warped)
        _update(self.opt_g, g.total, self.g_params)
        self.step += 1
        values = [torch.stack([d_adversarial, g.adversarial, g.info.loss]).detach(), g.info.mi]
        values += [term.detach().reshape(1) for term in (g.invariance, g.iic) if term is not None]
        return torch.cat(values)

    # -- the loop ------------------------------------------------------------------------

    @property
    def metric_names(self) -> list[str]:
        names = ["d_loss", "g_loss", "info_loss", *(f"mi_{name}" for name in self.spec.code_names)]
        names += ["invariance_loss"] if self.config.lambda_invariance else []
        return names + (["iic_mi"] if self.config.lambda_iic else [])

    def fit(self, progress: bool = True) -> TrainResult:
        """Train until ``config.iterations`` steps, writing to ``run_dir`` when there is one.

        Raises:
            TrainingDiverged: if a loss becomes NaN/inf or exceeds ``config.max_loss``;
                the checkpoint on disk is then the last good one.
        """
        config = self.config
        metrics = MetricsLog(self.run_dir) if self.run_dir is not None else None
        start_step, start_time = self.step, time.perf_counter()
        window, window_steps, window_time = None, 0, start_time
        bar = tqdm(total=config.iterations, initial=self.step, desc="infogan", unit="it", disable=not progress)
        try:
            while self.step < config.iterations:
                values = self.train_step()
                window = values if window is None else window + values
                window_steps += 1
                bar.update(1)
                final = self.step == config.iterations
                save = self.run_dir is not None and (final or self.step % config.checkpoint_every == 0)
                if final or save or self.step % config.log_every == 0:
                    now = time.perf_counter()
                    means = dict(zip(self.metric_names, (window / window_steps).tolist()))  # one sync
                    means["it_per_s"] = window_steps / max(now - window_time, 1e-9)
                    window, window_steps, window_time = None, 0, now
                    self._check_divergence(means)
                    bar.set_postfix_str(self._summary(means), refresh=False)
                    if metrics is not None:
                        metrics.log(self.step, **means)
                if self.run_dir is not None and (final or self.step % config.sample_every == 0):
                    self.save_samples(self.run_dir / "samples" / f"step_{self.step:06d}.png")
                if save:
                    self.save_checkpoint()
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
        seconds = time.perf_counter() - start_time
        return TrainResult(self.run_dir, self.step, seconds, (self.step - start_step) / max(seconds, 1e-9))

    def _summary(self, means: dict[str, float]) -> str:
        codes = " ".join(f"{name}={means[f'mi_{name}']:.2f}" for name in self.spec.code_names)
        return f"D={means['d_loss']:.3f} G={means['g_loss']:.3f} L_I[nats] {codes}"

    def _check_divergence(self, means: dict[str, float]) -> None:
        bad = [name for name, value in means.items() if not math.isfinite(value)]
        bad += [name for name in ("d_loss", "g_loss") if means.get(name, 0.0) > self.config.max_loss]
        if not bad:
            return
        described = ", ".join(f"{name}={means[name]:.4g}" for name in bad)
        if self.last_checkpoint_step is None:
            kept = "no checkpoint was written yet"
        else:
            path = self.run_dir / "checkpoint.pt"
            kept = f"the last good checkpoint (step {self.last_checkpoint_step}) is kept at {path}"
        raise TrainingDiverged(
            f"training diverged by step {self.step}: {described} (averaged over the last logging window; "
            f"limit --max-loss {self.config.max_loss:g}); {kept}. Try lower learning rates "
            f"(--lr-d, --lr-g), a smaller --lambda-cont, or another --seed."
        )

    # -- outputs -------------------------------------------------------------------------

    def save_samples(self, path: Path) -> None:
        """Save G's images of the fixed latent grid (one row per value of c1) as a PNG."""
        from torchvision.utils import (
            save_image,  # here: torchvision adds seconds to every CLI start
        )

        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(self.model.generate(self.fixed_latent).add(1).div(2), path, nrow=10, padding=2)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: models, optimisers, step and every RNG, for an exact resume."""
        return {
            "kind": CHECKPOINT_KIND,
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "image_size": self.model.image_size,
            "channels": self.model.channels,
            "classes": self.classes,
            "step": self.step,
            "model": self.model.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "rng": rng_state(),
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (call after construction, before :meth:`fit`)."""
        self.model.load_state_dict(checkpoint["model"])
        self.opt_d.load_state_dict(checkpoint["opt_d"])
        self.opt_g.load_state_dict(checkpoint["opt_g"])
        self.step = int(checkpoint["step"])
        self.last_checkpoint_step = self.step
        set_rng_state(checkpoint["rng"])

    def save_checkpoint(self) -> None:
        """Atomically write ``checkpoint.pt``, unless the weights hold NaN/inf (then training stops)."""
        finite = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all()
        if not bool(finite):
            self._check_divergence({"weights": math.nan})
        atomic_save(self.state_dict(), self.run_dir / "checkpoint.pt")
        self.last_checkpoint_step = self.step


def make_trainer(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> Trainer:
    """Load the data, build (or restore) the trainer and write ``config.json``; :func:`train` then fits it.

    Args:
        config: the run's settings (see :class:`TrainConfig`).
        resume: continue the run in ``config.out`` from its checkpoint. The saved
            settings are used, except ``iterations`` (to extend a run),
            ``device`` and ``data_dir``.
        progress: show a progress bar while decoding image files.

    Raises:
        ValueError: if ``config.out`` already holds a run and ``resume`` is not set,
            or ``resume`` is set without a run to resume.
    """
    from dim.core.data import (
        load_dataset,  # imported here: torchvision adds seconds to every CLI start
    )

    checkpoint = None
    if resume:
        if config.out is None:
            raise ValueError("resume needs the run directory to continue: pass --out RUN_DIR")
        run_dir = Path(config.out)
        checkpoint = load_checkpoint(run_dir, CHECKPOINT_KIND)
        saved = TrainConfig.from_dict(checkpoint["config"])
        config = replace(saved, iterations=config.iterations, device=config.device,
                         data_dir=config.data_dir or saved.data_dir, out=str(run_dir))
        if config.iterations <= checkpoint["step"]:
            raise ValueError(
                f"{run_dir} is already at step {checkpoint['step']}; pass --iterations above it to train further"
            )
    else:
        run_dir = Path(config.out) if config.out else default_run_dir(f"infogan-{Path(config.dataset).name}")
        if (run_dir / "checkpoint.pt").exists():
            raise ValueError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
        config = replace(config, out=str(run_dir))

    dataset = load_dataset(
        config.dataset, "train", config.data_dir,
        image_size=config.image_size, channels=config.channels, progress=progress,
    )
    trainer = Trainer(config, dataset.images, run_dir, dataset.classes)
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
    write_config(run_dir, {**config.to_dict(), "image_size": dataset.image_size, "channels": dataset.channels,
                           "num_images": len(dataset), "classes": dataset.classes})
    return trainer


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train InfoGAN as ``config`` says and return the run directory.

    Arguments as :func:`make_trainer`.

    Raises:
        ValueError: see :func:`make_trainer`.
        TrainingDiverged: if training diverges (the last good checkpoint is kept).

    Example:
        >>> run_dir = train(TrainConfig(dataset="mnist", data_dir="../shared/datasets", iterations=200))
    """
    trainer = make_trainer(config, resume=resume, progress=progress)
    trainer.fit(progress)
    return trainer.run_dir
