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

With ``lambda_invariance > 0`` randomly warped copies of x_fake
(:func:`infogan.augment.random_affine`; each step draws its own) join both
steps, and Q's categorical cross-entropy on them is added with that weight: Q must read c1 whatever the
slant, width and position, so those cannot carry c1. With ``lambda_iic > 0``
real images and warped copies of them join too, and Q is also trained to
maximise the mutual information between its c1 for an image and for the copy
(IIC, :class:`dim.mi.PairedCategoricalMI`): Q's codes must then group real
images confidently and consistently, not only tell the fakes apart.

With ``objective="ogan"`` the same loop trains O-GAN (Su, arXiv 1903.01931):
:class:`infogan.models.OGAN` and :class:`infogan.objective.OGANObjective`, no
Q and no codes; the G step trains G alone. At the end it also draws
``reconstructions.png``: real test images above G(standardise(E(x)))
(:func:`infogan.sample.save_reconstructions`).

The losses of both steps are the objective's, called through one interface
(:class:`infogan.objective.GANObjective`); this module is the loop around
them: data on the device, optimisers, the run directory
(:func:`dim.core.runs.open_run`), checkpoints, sample grids and the
divergence guard.

The loop keeps the losses on the device and reads them back only every
``log_every`` steps (one sync), where it also checks for divergence.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
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
from infogan.checkpoint import KINDS
from infogan.config import RESUMABLE, TrainConfig
from infogan.models import OGAN, build_model
from infogan.objective import GANBatch, build_objective
from infogan.sample import save_reconstructions

RECONSTRUCTIONS = 10  # test images in the top row of an O-GAN run's reconstructions.png


class TrainingDiverged(RuntimeError):
    """Training stopped because a loss became NaN/inf or exploded; the last good checkpoint is kept."""


def _update(optimizer: torch.optim.Optimizer, loss: Tensor, params: list[torch.nn.Parameter]) -> None:
    """One optimiser step on ``loss``, computing gradients for ``params`` only (others get none)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for param, grad in zip(params, grads):
        param.grad = grad
    optimizer.step()


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train InfoGAN (or O-GAN, with ``config.objective="ogan"``) as ``config`` says.

    Builds a :class:`Trainer`, runs it and closes it; the arguments are the trainer's.

    Returns:
        What the call did: the run directory, steps, time and the last logged metrics.

    Raises:
        ValueError: see :class:`Trainer`.
        FileNotFoundError: for ``resume`` without a checkpoint.
        TrainingDiverged: if training diverges (the last good checkpoint is kept).

    Example:
        >>> result = train(TrainConfig(dataset="mnist", data_dir="data", iterations=200))
        >>> result.run_dir, result.metrics["mi_c1"]
    """
    trainer = Trainer(config, resume=resume, progress=progress)
    try:
        return trainer.run()
    finally:
        trainer.close()


class Trainer:
    """One InfoGAN (or O-GAN) run: its directory, its data on the device, the networks and their optimisers.

    Construction opens (or, with ``resume``, reopens) the run directory
    (:func:`dim.core.runs.open_run`), resolves the settings
    (:meth:`TrainConfig.resolved`), loads the training split into memory, seeds
    every RNG with ``config.seed``, builds the model
    (:func:`infogan.models.build_model`) and its objective
    (:func:`infogan.objective.build_objective`), restores the checkpoint when
    resuming, and writes ``config.json``. :meth:`run` then trains; :func:`train`
    does both and :meth:`close`.

    Args:
        config: the run's settings. ``config.out`` is the run directory
            (default ``runs/<objective>-<dataset>-<time>``).
        resume: continue the run in ``config.out`` from its checkpoint. The saved
            settings are used, except those in :data:`infogan.config.RESUMABLE`
            (``data_dir`` left unset keeps the run's own).
        progress: show progress bars (decoding image files, and training).

    Raises:
        ValueError: for invalid settings, if ``config.out`` already holds a run and
            ``resume`` is not set, ``resume`` is set without a run directory, or
            the run is already at ``iterations``.
        FileNotFoundError: for ``resume`` without a checkpoint.

    Example:
        >>> trainer = Trainer(TrainConfig(dataset="mnist", iterations=200, out="runs/demo"))
        >>> try:
        ...     result = trainer.run()
        ... finally:
        ...     trainer.close()
    """

    def __init__(self, config: TrainConfig, *, resume: bool = False, progress: bool = True) -> None:
        from dim.core.datasets import (
            load_dataset,  # imported here: torchvision adds seconds to every CLI start
        )

        kind = config.objective  # the checkpoint kind; a resumed run has its own, whatever the request says
        if resume and config.out is not None:
            kind = load_checkpoint(config.out, KINDS, mmap=True)["kind"]
        config, self.run_dir, checkpoint = open_run(
            config, kind=kind, resume=resume, resumable=RESUMABLE, from_dict=lambda values: TrainConfig(**values)
        )
        config = config.resolved()
        if checkpoint is not None and config.iterations <= checkpoint["step"]:
            raise ValueError(
                f"{self.run_dir} is already at step {checkpoint['step']}; pass --iterations above it to train further"
            )
        self.config = config
        self.progress = progress
        self.device = select_device(config.device)
        dataset = load_dataset(
            config.dataset, "train", config.data_dir,
            image_size=config.image_size, channels=config.channels, progress=progress,
        )
        self.classes = dataset.classes
        self.images = dataset.images.to(self.device)  # (N, C, H, W) uint8; batches are drawn by indexing it

        seed_everything(config.seed)  # then build: two trainers with the same config and device start identically
        self.spec = config.latent_spec()
        self.model = build_model(config, dataset.channels, dataset.image_size).to(self.device)
        self.objective = build_objective(config, self.model)
        self.d_params = self.model.d_parameters()
        self.g_params = self.model.g_parameters()
        betas = (config.beta1, config.beta2)
        self.opt_d = adam(self.d_params, self.device, lr=config.lr_d, betas=betas)
        self.opt_g = adam(self.g_params, self.device, lr=config.lr_g, betas=betas)
        self.step = 0
        self.last_checkpoint_step: int | None = None
        if self.spec.code_names:  # InfoGAN: one row per value of c1
            self.fixed_latent = self.spec.traversal(self.spec.code_names[0], columns=10, seed=config.seed)
        else:  # O-GAN: 100 fixed noise samples
            self.fixed_latent = self.spec.sample(100, generator=torch.Generator().manual_seed(config.seed))
        # O-GAN: the real images whose reconstructions the run draws at the end.
        self.held_out = self._held_out(dataset.images) if isinstance(self.model, OGAN) else None

        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        write_config(self.run_dir, {**asdict(config), "image_size": dataset.image_size, "channels": dataset.channels,
                                    "num_images": len(dataset), "classes": dataset.classes})
        self.metrics = MetricsLog(self.run_dir)

    def _held_out(self, train_images: Tensor) -> Tensor:
        """The first :data:`RECONSTRUCTIONS` test images, uint8 ``(n, C, H, W)``.

        A dataset without a test split gives its first training images instead.
        """
        from dim.core.datasets import load_dataset

        config = self.config
        try:
            test = load_dataset(config.dataset, "test", config.data_dir, image_size=train_images.shape[-1],
                                channels=train_images.shape[1], progress=False)
        except ValueError:  # a dataset without a test split: the first training images stand in
            return train_images[:RECONSTRUCTIONS]
        return test.images[:RECONSTRUCTIONS]

    def train_step(self) -> Tensor:
        """One D step and one G step (G and Q for InfoGAN) on a fresh batch.

        Returns:
            The step's detached values on the device, ``(len(metric_names),)``:
            the D step's, then the G step's (:class:`infogan.objective.StepLoss`).
        """
        batch_size = self.config.batch_size
        index = torch.randint(len(self.images), (batch_size,), device=self.device)
        real = normalize_images(self.images[index])  # (B, C, H, W) in [-1, 1]
        latent = self.spec.sample(batch_size, self.device)
        fake = self.model.generator(self.spec.generator_input(latent))  # (B, C, H, W)
        batch = GANBatch(real, latent, fake)
        d = self.objective.discriminator_step(batch)
        _update(self.opt_d, d.loss, self.d_params)
        g = self.objective.generator_step(batch)
        _update(self.opt_g, g.loss, self.g_params)
        self.step += 1
        return torch.cat([d.values, g.values])

    @property
    def metric_names(self) -> list[str]:
        """The values of :meth:`train_step`: the objective's (``metrics.csv`` adds ``it_per_s``)."""
        return self.objective.metric_names

    def run(self) -> TrainResult:
        """Train until ``config.iterations`` steps, writing metrics, samples and checkpoints to the run directory.

        Raises:
            TrainingDiverged: if a loss becomes NaN/inf or exceeds ``config.max_loss``;
                the checkpoint on disk is then the last good one.
        """
        config = self.config
        start_step, start_time = self.step, time.perf_counter()
        window, window_time, means = MetricWindow(self.metric_names, self.device), start_time, {}
        bar = tqdm(total=config.iterations, initial=self.step, desc=config.objective, unit="it",
                   disable=not self.progress)
        try:
            while self.step < config.iterations:
                window.add(self.train_step())
                bar.update(1)
                final = self.step == config.iterations
                save = final or self.step % config.checkpoint_every == 0
                if save or self.step % config.log_every == 0:
                    now = time.perf_counter()
                    steps = window.steps
                    means = window.read()  # the only sync
                    means["it_per_s"] = steps / max(now - window_time, 1e-9)
                    window_time = now
                    self._check_divergence(means)
                    bar.set_postfix_str(self.objective.summary(means), refresh=False)
                    self.metrics.log(self.step, **means)
                if final or self.step % config.sample_every == 0:
                    self.save_samples(self.run_dir / "samples" / f"step_{self.step:06d}.png")
                if save:
                    self.save_checkpoint()
                if final and self.held_out is not None:
                    save_reconstructions(self.model, self.held_out, self.run_dir / "reconstructions.png")
        finally:
            bar.close()
        seconds = time.perf_counter() - start_time
        return TrainResult(self.run_dir, self.step, seconds, self.step - start_step, means)

    def close(self) -> None:
        """Close ``metrics.csv`` (and draw ``curves.png``)."""
        self.metrics.close()

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
            f"(--lr-d, --lr-g), smaller weights of the extra terms, or another --seed."
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
        """The checkpoint (:mod:`dim.core.checkpoint`'s layout): models, optimisers, step and RNG, for an exact resume.

        Its kind is the run's objective (one of :data:`infogan.checkpoint.KINDS`).
        """
        state = {"image_size": self.model.image_size, "channels": self.model.channels, "classes": self.classes}
        optimizers = {"d": self.opt_d, "g": self.opt_g}
        return make_checkpoint(
            self.config.objective, asdict(self.config), self.step, {"model": self.model}, optimizers, [rng_state()],
            state,
        )

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved: weights, optimisers, step and RNG (construction does it on resume)."""
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
