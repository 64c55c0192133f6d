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
from dim.core.probes import KNN_K, KNN_TEMPERATURE
from dim.models import ARCHS
from dim.objective import VIEWS, check_choice, check_objective

# The settings a preset fills in when they are not given explicitly; every preset sets each of them.
PRESET_FIELDS = (
    "bound", "negatives", "critic", "prior", "alpha", "beta", "gamma", "batch_size", "lr", "lr_schedule",
    "augment", "views", "critic_hidden", "critic_temperature", "local_maps", "arch", "compile",
)
# The setting of Su Jianlin's 2018 derivation of DIM ("深度学习的互信息：无监督提取特征",
# kexue.fm/archives/6024): JSD, one shuffled negative, concat critics, closed-form KL prior, no augmentation.
_SU_JIANLIN: dict[str, Any] = {
    "bound": "jsd", "negatives": "shuffle", "critic": "concat", "prior": "kl", "alpha": 0.5, "beta": 1.5,
    "gamma": 0.01, "batch_size": 64, "lr": 1e-3, "lr_schedule": "constant", "augment": "none", "views": 1,
    "critic_hidden": 256, "critic_temperature": 0.0, "local_maps": "local", "arch": "dcgan", "compile": False,
}
# The DIM paper's DIM(L) with infoNCE (Hjelm et al., ICLR 2019, Sec. 4 and App. A): the local term alone
# (alpha 0, beta 1), every position of every other image as a negative, encoder-and-dot-product
# (separable) critics of width 512, adversarial prior matching with gamma 0.1, Adam 1e-4, batch 64.
_PAPER: dict[str, Any] = {
    "bound": "infonce", "negatives": "locations", "critic": "separable", "prior": "adversarial", "alpha": 0.0,
    "beta": 1.0, "gamma": 0.1, "batch_size": 64, "lr": 1e-4, "lr_schedule": "constant", "augment": "none",
    "views": 1, "critic_hidden": 512, "critic_temperature": 0.0, "local_maps": "local", "arch": "dcgan",
    "compile": False,
}
# The recipe that measured best at a 30-minute CPU budget (benchmarks/RESULTS.md): the paper's local
# infoNCE across locations alone (DIM(L); the global term reaches its log-batch ceiling in the first epoch and
# then costs time without teaching), separable critics of width 256, the KL prior, flip + crop, batch 128,
# and a learning rate that decays to zero on a cosine over the run's budget.
_BEST: dict[str, Any] = {
    "bound": "infonce", "negatives": "locations", "critic": "separable", "prior": "kl", "alpha": 0.0, "beta": 2.0,
    "gamma": 0.01, "batch_size": 128, "lr": 1e-3, "lr_schedule": "cosine", "augment": "flip-crop", "views": 1,
    "critic_hidden": 256, "critic_temperature": 0.0, "local_maps": "local", "arch": "dcgan", "compile": False,
}
# For one GPU: the best recipe on a ResNet-18 encoder with large batches through torch.compile; the data,
# the augmentation and bf16 autocast are on the device already (not measured on a GPU yet).
_GPU: dict[str, Any] = {**_BEST, "arch": "resnet18", "batch_size": 512, "lr": 2e-3, "compile": True}
PRESETS: dict[str, dict[str, Any]] = {"best": _BEST, "paper": _PAPER, "su-jianlin": _SU_JIANLIN, "gpu": _GPU}
LR_SCHEDULES = ("constant", "cosine")
# Settings that may change when a run is resumed; the rest come from the checkpoint.
RESUMABLE = ("epochs", "max_steps", "time_limit", "device", "data_dir", "threads", "stream", "num_workers")


@dataclass
class TrainConfig:
    """Everything a DIM training run is configured by (saved as ``config.json``).

    ``None`` fields take the value of the chosen :data:`PRESETS` entry (the
    fields of :data:`PRESET_FIELDS`).

    Attributes:
        dataset: a dataset name (``cifar10``, ``shapes``, ...) or an image folder.
        data_dir: root of the named datasets (default ``$DIM_DATA_DIR``, else ``./data``).
        image_size: side of the square training images (``None``: the dataset's own,
            MNIST 28, STL-10 96, others and folders 32). The encoder grows with it
            (:class:`dim.models.Encoder`) and the trained model records it, so
            embedding and search preprocess to the same size.
        stream: decode the training images from their files while training, in
            ``num_workers`` DataLoader processes, instead of holding them decoded in
            memory (image folders and image-folder trees only). ``None``: stream when
            the decoded training split would take more than half the available RAM
            (:func:`dim.core.memory.fits_in_memory`). Streaming sees the same pixels,
            batches and augmentations as training in memory, so it resumes either way.
        num_workers: decoding processes when streaming (``None``: one per CPU core
            beyond the main process, at most 8; 0: decode in the training process).
        out: run directory (default ``runs/dim-<dataset>-<time>``).
        preset: a key of :data:`PRESETS`: ``best`` (the recipe that measured best at a
            30-minute CPU budget), ``paper`` (the DIM paper's DIM(L) infoNCE),
            ``su-jianlin`` (the setting of Su Jianlin's 2018 derivation,
            kexue.fm/archives/6024) or ``gpu`` (the best recipe scaled for one GPU).
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
        negatives: one of :data:`dim.objective.NEGATIVES`, the samplers of :data:`dim.mi.NEGATIVES`.
        critic: the critic form, one of :data:`dim.objective.CRITICS`.
        augment: one of :data:`dim.augment.AUGMENTATIONS`.
        views: one of :data:`dim.objective.VIEWS`: 1, or 2: two augmented views of
            each image, each view's features scored against the other's code
            (see :class:`dim.objective.DeepInfoMax`); a step then encodes twice
            as many images.
        prior: one of :data:`dim.objective.PRIORS`.
        alpha: weight of the global MI term.
        beta: weight of the local MI term.
        gamma: weight of the prior term.
        arch: encoder, one of :data:`dim.models.ARCHS`.
        z_dim: size of the code.
        critic_hidden: hidden width of the critics. The DIM paper uses 512; 256
            halves the critics' cost (the local concat critic at 512 alone costs
            as much as the encoder).
        critic_temperature: 0 for the separable critics' raw dot products, else the
            temperature of their cosine scores.
        local_maps: one of :data:`dim.objective.LOCAL_MAPS`: the maps whose positions the
            local term scores against the code, ``local`` (C(x), as DIM) or ``local+conv``
            (also the last convolutional map's, a multi-scale term after AMDIM).
        precision: one of :data:`dim.core.device.PRECISIONS`: the number format of
            the training step and of embedding (``auto``: bf16 where bf16 is fast, CUDA or a
            CPU with AVX-512 BF16 or AMX, fp32 elsewhere; see :func:`dim.core.device.autocast`).
        device: ``auto``, ``cpu``, ``cuda``, ...
        seed: seed of every RNG.
        threads: CPU threads torch may use (0: torch's default).
        knn: report kNN top-1 after each epoch and at the end (labelled data only).
        knn_k, knn_temperature: the kNN protocol (:data:`dim.core.probes.KNN_K`,
            :data:`dim.core.probes.KNN_TEMPERATURE`).
        knn_memory, knn_queries: sizes of the fixed training / test subsets of
            the kNN check after each epoch (the last evaluation uses everything).
        log_every: steps between progress-bar updates (the only device syncs).
        compile: run the training step through ``torch.compile``.
    """

    dataset: str = "shapes"
    data_dir: str | None = None
    image_size: int | None = None
    stream: bool | None = None
    num_workers: int | None = None
    out: str | None = None
    preset: str = "best"
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
    prior: str | None = None
    alpha: float | None = None
    beta: float | None = None
    gamma: float | None = None
    arch: str | None = None
    z_dim: int = 64
    critic_hidden: int | None = None
    critic_temperature: float | None = None
    local_maps: str | None = None
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    threads: int = 0
    knn: bool = True
    knn_k: int = KNN_K
    knn_temperature: float = KNN_TEMPERATURE
    knn_memory: int = 10000
    knn_queries: int = 2000
    log_every: int = 10
    compile: bool | None = None

    def resolved(self) -> TrainConfig:
        """A copy with the preset's values filled in and every choice checked."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        filled = {name: value for name, value in PRESETS[self.preset].items() if getattr(self, name) is None}
        config = dataclasses.replace(self, **filled)
        check_objective(config.bound, config.negatives, config.critic, config.prior,
                        config.alpha, config.beta, config.gamma, config.critic_temperature, config.local_maps)
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
        if config.image_size is not None and config.image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {config.image_size}")
        if config.num_workers is not None and config.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0: decode in the training process), got {config.num_workers}")
        if config.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: torch's default), got {config.threads}")
        if config.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {config.log_every}")
        return config
