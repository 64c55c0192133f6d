"""The settings of a DIM run and its presets.

The valid values of the objective's choices live in :mod:`dim.objective`, of
the encoder's in :mod:`dim.models`, of the augmentation's in :mod:`dim.augment`;
:meth:`TrainConfig.resolved` checks a configuration against them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dim.augment import AUGMENTATIONS
from dim.core.device import PRECISIONS
from dim.models import ARCHS
from dim.objective import VIEWS, check_choice, check_objective

# Settings a preset fills in when they are not given explicitly.
PRESETS: dict[str, dict[str, Any]] = {
    # The setting of Su Jianlin's 2018 derivation of DIM ("深度学习的互信息：无监督提取特征",
    # kexue.fm/archives/6024): JSD, one shuffled negative, concat critics, no augmentation.
    "default": {"bound": "jsd", "negatives": "shuffle", "critic": "concat", "batch_size": 64, "lr": 1e-3,
                "lr_schedule": "constant", "augment": "none", "views": 1, "critic_temperature": 0.0},
    # The most accuracy per CPU-minute of the settings measured in benchmarks/RESULTS.md: the DIM paper's
    # (Hjelm et al., ICLR 2019) local infoNCE against every position of every other image, separable
    # critics (all scores in one matrix product), flip + crop augmentation, and a learning rate that
    # decays to zero over the run's budget.
    "fast": {"bound": "infonce", "negatives": "locations", "critic": "separable", "batch_size": 128, "lr": 1e-3,
             "lr_schedule": "cosine", "augment": "flip-crop", "views": 1, "critic_temperature": 0.0},
}
LR_SCHEDULES = ("constant", "cosine")
# Settings that may change when a run is resumed; the rest come from the checkpoint.
RESUMABLE = ("epochs", "max_steps", "time_limit", "device", "data_dir", "threads")


@dataclass
class TrainConfig:
    """Everything a DIM training run is configured by (saved as ``config.json``).

    ``None`` fields take the value of the chosen :data:`PRESETS` entry.

    Attributes:
        dataset: a dataset name (``cifar10``, ``shapes``, ...) or an image folder.
        data_dir: root of the named datasets (default ``$DIM_DATA_DIR``, else ``./data``).
        out: run directory (default ``runs/dim-<dataset>-<time>``).
        preset: a key of :data:`PRESETS`: ``default`` (the setting of Su Jianlin's
            2018 derivation, kexue.fm/archives/6024) or ``fast``.
        epochs: passes over the training split.
        max_steps: stop after this many optimiser steps in total (``None``: no limit).
        time_limit: stop after this many minutes of training in this session
            (``None``: no limit); evaluation time does not count.
        batch_size: images per step and process.
        lr: Adam's (peak) learning rate.
        lr_schedule: one of :data:`LR_SCHEDULES`: ``constant``, or ``cosine``:
            ``lr * (1 + cos(pi * p)) / 2`` at progress ``p`` in [0, 1], the largest
            used-up fraction of the run's budgets (epochs, ``max_steps``,
            ``time_limit``), so the rate reaches zero when the first budget runs out. Time counts this session only
            (as ``time_limit`` does), so resuming a timed run restarts its time share.
        bound: the MI bound of both terms, one of :data:`dim.objective.BOUNDS`.
        negatives: one of :data:`dim.objective.NEGATIVES` (see :class:`dim.objective.DeepInfoMax`).
        critic: the critic form, one of :data:`dim.objective.CRITICS`.
        augment: one of :data:`dim.augment.AUGMENTATIONS`.
        views: one of :data:`dim.objective.VIEWS`: 1, or 2: two augmented views of
            each image, each view's features scored against the other's code
            (see :class:`dim.objective.DeepInfoMax`); a step then encodes twice
            as many images.
        prior: one of :data:`dim.objective.PRIORS`.
        alpha, beta, gamma: weights of the global MI, local MI and prior terms
            (by default those of Su Jianlin's derivation).
        arch: encoder, one of :data:`dim.models.ARCHS`.
        z_dim: size of the code.
        critic_hidden: hidden width of the critics. The DIM paper uses 512; 256
            keeps a step of the default objective at about 200 MFLOP per image
            (the local concat critic at 512 alone costs as much as the encoder).
        critic_temperature: 0 for the separable critics' raw dot products, else the
            temperature of their cosine scores.
        precision: one of :data:`dim.core.device.PRECISIONS`: the number format of
            the training step (``auto``: bf16 where the device has fast bf16, see
            :func:`dim.core.device.autocast`), recorded for embedding too.
        device: ``auto``, ``cpu``, ``cuda``, ...
        seed: seed of every RNG.
        threads: CPU threads torch may use (0: torch's default). The data
            lives in memory, so there are no loader processes.
        knn: report kNN top-1 after each epoch and at the end (labelled data only).
        knn_k, knn_temperature: the kNN protocol (k = 200, T = 0.1).
        knn_memory, knn_queries: sizes of the fixed training / test subsets of
            the kNN check after each epoch (the last evaluation uses everything).
        log_every: steps between progress-bar updates (the only device syncs).
        compile: run the training step through ``torch.compile``.
    """

    dataset: str = "shapes"
    data_dir: str | None = None
    out: str | None = None
    preset: str = "default"
    epochs: int = 10
    max_steps: int | None = None
    time_limit: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_schedule: str | None = None
    bound: str | None = None
    negatives: str | None = None
    critic: str | None = None
    augment: str | None = None
    views: int | None = None
    prior: str = "kl"
    alpha: float = 0.5
    beta: float = 1.5
    gamma: float = 0.01
    arch: str = "dcgan"
    z_dim: int = 64
    critic_hidden: int = 256
    critic_temperature: float | None = None
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    threads: int = 0
    knn: bool = True
    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_memory: int = 10000
    knn_queries: int = 2000
    log_every: int = 10
    compile: bool = False

    def resolved(self) -> TrainConfig:
        """A copy with the preset's values filled in and every choice checked."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        filled = {name: value for name, value in PRESETS[self.preset].items() if getattr(self, name) is None}
        config = dataclasses.replace(self, **filled)
        check_objective(config.bound, config.negatives, config.critic, config.prior,
                        config.alpha, config.beta, config.gamma, config.critic_temperature)
        for name, choices in [("arch", ARCHS), ("augment", AUGMENTATIONS), ("lr_schedule", LR_SCHEDULES),
                              ("views", VIEWS), ("precision", PRECISIONS)]:
            check_choice(name, getattr(config, name), choices)
        if config.views == 2 and config.augment == "none":
            raise ValueError("two views of an image are identical without augmentation: set augment (--augment)")
        if config.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {config.epochs}")
        if config.max_steps is not None and config.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {config.max_steps}")
        if config.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (negatives come from the batch), got {config.batch_size}")
        if config.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: torch's default), got {config.threads}")
        if config.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {config.log_every}")
        return config
