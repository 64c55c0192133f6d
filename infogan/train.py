"""Training InfoGAN (or O-GAN): alternate a D step and a G+Q step, with run directories and exact resume.

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

With ``objective="ogan"`` the same loop trains O-GAN (Su, arXiv 1903.01931):
:class:`infogan.models.OGAN` and :class:`infogan.objective.OGANObjective`, no
Q and no codes; the G step trains G alone. At the end it also draws
``reconstructions.png``: real images above G(standardise(E(x)))
(:func:`infogan.sample.save_reconstructions`).

The losses of both steps are :class:`infogan.objective.InfoGANObjective`'s
(or :class:`~infogan.objective.OGANObjective`'s); this module is the loop around them: data on the device, optimisers, the run
directory (:func:`dim.core.runs.open_run`), checkpoints, sample grids and the
divergence guard.

The loop keeps the losses on the device and reads them back only every
``log_every`` steps (one sync), where it also checks for divergence.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from dim.core.atomic import atomic_save
from dim.core.checkpoint import load_checkpoint, make_checkpoint
from dim.core.device import adam, seed_everything, select_device
from dim.core.images import normalize_images
from dim.core.metrics import MetricsLog, MetricWindow
from dim.core.runs import TrainResult, open_run, restore_rng, rng_state, write_config
from infogan.augment import random_affine
from infogan.checkpoint import CHECKPOINT_KINDS
from infogan.codes import LatentSpec
from infogan.config import RESUMABLE, TrainConfig
from infogan.models import OGAN, InfoGAN
from infogan.objective import InfoGANObjective, OGANObjective
from infogan.sample import save_reconstructions

RECONSTRUCTIONS = 10  # images in the top row of reconstructions.png


class TrainingDiverged(RuntimeError):
    """Training stopped because a loss became NaN/inf or exploded; the last good checkpoint is kept."""


def build_networks(
    config: TrainConfig, spec: LatentSpec, channels: int, image_size: int
) -> tuple[InfoGAN | OGAN, InfoGANObjective | OGANObjective]:
    """The networks and the objective of ``config.objective``, on the CPU."""
    if config.objective == "ogan":
        model = OGAN(spec, channels, image_size)
        return model, OGANObjective(model, config.lambda_corr)
    model = InfoGAN(spec, channels, image_size, config.separate_q, config.learn_sigma)
    objective = InfoGANObjective(
        model, spec, config.lambda_info, config.lambda_cont, config.lambda_invariance, config.lambda_iic
    )
    return model, objective


def _update(optimizer: torch.optim.Optimizer, loss: Tensor, params: list[torch.nn.Parameter]) -> None:
    """One optimiser step on ``loss``, computing gradients for ``params`` only (others get none)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for param, grad in zip(params, grads):
        param.grad = grad
    optimizer.step()


class Trainer:
    """InfoGAN's (and O-GAN's) training loop over an in-memory uint8 image tensor.

    Args:
        config: the run's settings.
        images: uint8 ``(N, C, H, W)`` training images; moved to the device
            once, and batches are drawn by indexing it there.
        run_dir: where to write metrics, samples and checkpoints; ``None``
            trains without writing anything (benchmarks).
        classes: the dataset's class names, kept in the checkpoint for evaluation.
        held_out: uint8 ``(M, C, H, W)`` images whose reconstructions an O-GAN run
            draws at the end (the first :data:`RECONSTRUCTIONS`; default: the
            first training images). Ignored for InfoGAN.

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
        held_out: Tensor | None = None,
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
        self.model, self.objective = build_networks(config, self.spec, channels, image_size)
        self.model.to(self.device)
        self.d_params = self.model.d_parameters()
        self.g_params = self.model.g_parameters()
        betas = (config.beta1, config.beta2)
        self.opt_d = adam(self.d_params, self.device, lr=config.lr_d, betas=betas)
        self.opt_g = adam(self.g_params, self.device, lr=config.lr_g, betas=betas)
        self.images = images.to(self.device)
        self.step = 0
        self.last_checkpoint_step: int | None = None
        if self.spec.code_names:  # InfoGAN: one row per value of c1
            self.fixed_latent = self.spec.traversal(self.spec.code_names[0], columns=10, seed=config.seed)
        else:  # O-GAN: 100 fixed noise samples
            self.fixed_latent = self.spec.sample(100, generator=torch.Generator().manual_seed(config.seed))
        self.held_out = (images if held_out is None else held_out)[:RECONSTRUCTIONS]

    def train_step(self) -> Tensor:
        """One D step and one G+Q step (G alone for O-GAN).

        Returns:
            The step's detached statistics on the device, named by :attr:`metric_names`:
            for InfoGAN ``(3 + num_codes [+ 1] [+ 1],)``: D loss, G loss (adversarial
            parts), information loss, L_I per code in nats, then the invariance
            cross-entropy and IIC's I(c; c') when those terms are on; for O-GAN
            ``(3,)``: D loss, G loss and corr(z, E(G(z))).
        """
        batch_size = self.config.batch_size
        index = torch.randint(len(self.images), (batch_size,), device=self.device)
        real = normalize_images(self.images[index])  # (B, C, H, W) in [-1, 1]
        latent = self.spec.sample(batch_size, self.device)
        fake = self.model.generator(self.spec.generator_input(latent))  # (B, C, H, W)
        warped = random_affine(fake) if self.config.lambda_invariance else None  # (B, C, H, W)
        real_warped = random_affine(real) if self.config.lambda_iic else None  # (B, C, H, W)

        detached = None if warped is None else warped.detach()
        d_total, d_adversarial = self.objective.discriminator(real, fake.detach(), latent, detached, real_warped)
        _update(self.opt_d, d_total, self.d_params)
        g = self.objective.generator(fake, latent, warped, real, real_warped)
        _update(self.opt_g, g.total, self.g_params)
        self.step += 1
        return self.objective.values(d_adversarial, g)

    # -- the loop ------------------------------------------------------------------------

    @property
    def metric_names(self) -> list[str]:
        """The statistics of :meth:`train_step`: the objective's (``metrics.csv`` adds ``it_per_s``)."""
        return self.objective.metric_names

    def fit(self, progress: bool = True) -> TrainResult:
        """Train until ``config.iterations`` steps, writing to ``run_dir`` when there is one.

        Raises:
            TrainingDiverged: if a loss becomes NaN/inf or exceeds ``config.max_loss``;
                the checkpoint on disk is then the last good one.
        """
        config = self.config
        metrics = MetricsLog(self.run_dir) if self.run_dir is not None else None
        start_step, start_time = self.step, time.perf_counter()
        window, window_time, means = MetricWindow(self.metric_names, self.device), start_time, {}
        bar = tqdm(total=config.iterations, initial=self.step, desc=config.objective, unit="it", disable=not progress)
        try:
            while self.step < config.iterations:
                window.add(self.train_step())
                bar.update(1)
                final = self.step == config.iterations
                save = self.run_dir is not None and (final or self.step % config.checkpoint_every == 0)
                if final or save or self.step % config.log_every == 0:
                    now = time.perf_counter()
                    steps = window.steps
                    means = window.read()  # the only sync
                    means["it_per_s"] = steps / max(now - window_time, 1e-9)
                    window_time = now
                    self._check_divergence(means)
                    bar.set_postfix_str(self._summary(means), refresh=False)
                    if metrics is not None:
                        metrics.log(self.step, **means)
                if self.run_dir is not None and (final or self.step % config.sample_every == 0):
                    self.save_samples(self.run_dir / "samples" / f"step_{self.step:06d}.png")
                if save:
                    self.save_checkpoint()
                if final and self.run_dir is not None and isinstance(self.model, OGAN):
                    save_reconstructions(self.model, self.held_out, self.run_dir / "reconstructions.png")
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
        seconds = time.perf_counter() - start_time
        return TrainResult(self.run_dir, self.step, seconds, self.step - start_step, means)

    def _summary(self, means: dict[str, float]) -> str:
        return self.objective.summary(means)

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
        weight = "--lambda-corr" if self.config.objective == "ogan" else "--lambda-cont"
        raise TrainingDiverged(
            f"training diverged by step {self.step}: {described} (averaged over the last logging window; "
            f"limit --max-loss {self.config.max_loss:g}); {kept}. Try lower learning rates "
            f"(--lr-d, --lr-g), a smaller {weight}, or another --seed."
        )

    # -- outputs -------------------------------------------------------------------------

    def save_samples(self, path: Path) -> None:
        """Save G's images of the fixed latent grid as a PNG: one row per value of c1 (O-GAN: 10x10 fixed noise)."""
        from torchvision.utils import (
            save_image,  # here: torchvision adds seconds to every CLI start
        )

        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(self.model.generate(self.fixed_latent).add(1).div(2), path, nrow=10, padding=2)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint (:mod:`dim.core.checkpoint`'s layout): models, optimisers, step and RNG, for an exact resume."""
        state = {"image_size": self.model.image_size, "channels": self.model.channels, "classes": self.classes}
        optimizers = {"d": self.opt_d, "g": self.opt_g}
        return make_checkpoint(
            self.config.objective, self.config.to_dict(), self.step, {"model": self.model}, optimizers, [rng_state()], state
        )

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (call after construction, before :meth:`fit`)."""
        self.model.load_state_dict(checkpoint["modules"]["model"])
        self.opt_d.load_state_dict(checkpoint["optimizers"]["d"])
        self.opt_g.load_state_dict(checkpoint["optimizers"]["g"])
        self.step = int(checkpoint["step"])
        self.last_checkpoint_step = self.step
        restore_rng(checkpoint["rng"], rank=0, world_size=1)

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
            settings are used, except those in :data:`infogan.config.RESUMABLE`
            (``data_dir`` left unset keeps the run's own).
        progress: show a progress bar while decoding image files.

    Raises:
        ValueError: if ``config.out`` already holds a run and ``resume`` is not set,
            ``resume`` is set without a run directory, or the run is already at ``iterations``.
        FileNotFoundError: for ``resume`` without a checkpoint.
    """
    from dim.core.data import (
        load_dataset,  # imported here: torchvision adds seconds to every CLI start
    )

    kind = config.objective  # the checkpoint kind; a resumed run has its own, whatever --objective says
    if resume and config.out is not None:
        kind = load_checkpoint(config.out, CHECKPOINT_KINDS, mmap=True)["kind"]
    config, run_dir, checkpoint = open_run(
        config, kind=kind, resume=resume, resumable=RESUMABLE, from_dict=TrainConfig.from_dict
    )
    if checkpoint is not None and config.iterations <= checkpoint["step"]:
        raise ValueError(
            f"{run_dir} is already at step {checkpoint['step']}; pass --iterations above it to train further"
        )
    dataset = load_dataset(
        config.dataset, "train", config.data_dir,
        image_size=config.image_size, channels=config.channels, progress=progress,
    )
    held_out = None
    if config.objective == "ogan":  # real test images to reconstruct at the end
        try:
            held_out = load_dataset(config.dataset, "test", config.data_dir, image_size=dataset.image_size,
                                    channels=dataset.channels, progress=False).images[:RECONSTRUCTIONS]
        except ValueError:  # a dataset without a test split: the first training images stand in
            held_out = None
    trainer = Trainer(config, dataset.images, run_dir, dataset.classes, held_out)
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
    write_config(run_dir, {**config.to_dict(), "image_size": dataset.image_size, "channels": dataset.channels,
                           "num_images": len(dataset), "classes": dataset.classes})
    return trainer


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train InfoGAN (or O-GAN, with ``config.objective="ogan"``) as ``config`` says.

    Arguments as :func:`make_trainer`.

    Returns:
        What the call did: the run directory, steps, time and the last logged metrics.

    Raises:
        ValueError: see :func:`make_trainer`.
        TrainingDiverged: if training diverges (the last good checkpoint is kept).

    Example:
        >>> result = train(TrainConfig(dataset="mnist", data_dir="../shared/datasets", iterations=200))
        >>> result.run_dir, result.metrics["mi_c1"]
    """
    trainer = make_trainer(config, resume=resume, progress=progress)
    return trainer.fit(progress)
