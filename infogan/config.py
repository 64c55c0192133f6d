"""The settings of an InfoGAN or O-GAN run (kept free of torch imports, so the CLI starts fast)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infogan.codes import LatentSpec


# The names of the objectives one trainer knows (``infogan train --objective``); each is also its runs'
# checkpoint kind (infogan.checkpoint.KINDS).
INFOGAN_OBJECTIVE, OGAN_OBJECTIVE = "infogan", "ogan"
OBJECTIVES: dict[str, str] = {
    INFOGAN_OBJECTIVE: "InfoGAN (Chen et al., NeurIPS 2016): Q recovers the codes c from G(z, c) through a "
                       "variational MI bound",
    OGAN_OBJECTIVE: "O-GAN (Su, arXiv 1903.01931): D outputs a vector E(x) of the noise's size, whose mean is the "
                    "real/fake score, and corr(z, E(G(z))) is maximised, so D is also an encoder",
}
# Priors of the noise z: Uniform(-1, 1) (the official InfoGAN code) or N(0, 1).
NOISE_DISTRIBUTIONS = ("uniform", "normal")
# What each objective fills in where the settings leave the latent space (and O-GAN's weight) open.
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {
    INFOGAN_OBJECTIVE: {"noise": "uniform", "categorical": (10,), "continuous": 2},
    OGAN_OBJECTIVE: {"noise": "normal", "categorical": (), "continuous": 0, "lambda_corr": 0.5},
}
# Settings that may change when a run is resumed; the rest come from the checkpoint.
RESUMABLE = ("iterations", "device", "data_dir")
# The settings a preset fills in when they are not given explicitly (the same preset names as `dim train`).
PRESETS: dict[str, dict[str, float]] = {
    # The objective that measured best (benchmarks/RESULTS.md): the paper's, plus the invariance term
    # (Q reads c1 from randomly warped fakes) and IIC on real images and their warps (Ji et al., ICCV 2019).
    "best": {"lambda_invariance": 1.0, "lambda_iic": 1.0},
    # The InfoGAN paper's objective (Chen et al., NeurIPS 2016): neither term.
    "paper": {"lambda_invariance": 0.0, "lambda_iic": 0.0},
}


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.json`` and in the checkpoint.

    A plain record of the settings as given: :meth:`resolved` fills in what was
    left open and checks every value (the trainer calls it once).

    The defaults are the InfoGAN paper's MNIST networks, latents and schedule,
    with the objective of the ``best`` preset; ``preset="paper"`` gives the
    paper's objective. ``objective="ogan"`` trains O-GAN on the same networks
    and schedule instead (see docs/ogan.md): no Q and no codes, normal noise,
    and D's head widened to ``noise_dim`` outputs.

    Args:
        dataset: a dataset name (``mnist``, ``fashion-mnist``, ``cifar10``, ``shapes``, ...)
            or an image-folder path, as :func:`dim.core.datasets.load_dataset` takes it.
        data_dir: root of the named datasets (default ``$DIM_DATA_DIR``, else ``./data``).
        out: the run directory (default ``runs/infogan-<dataset>-<time>``).
        image_size: side of the training images (default: the dataset's own).
        channels: 1 or 3 (default: the dataset's own).
        iterations: number of D + G steps (the official schedule is 5,000).
        batch_size: images per step for D and for G.
        seed: seeds every RNG; the same seed and device give the same run.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ...
        objective: a key of :data:`OBJECTIVES`: ``infogan`` (the default) or ``ogan``.
        noise_dim: number of incompressible noise variables z (see :class:`~infogan.codes.LatentSpec`);
            for O-GAN also the size of the encoding E(x).
        noise: prior of z, ``uniform`` or ``normal`` (default: ``uniform`` for InfoGAN,
            ``normal`` for O-GAN, as in each paper's code).
        categorical: the number of categories of each categorical code (default: one
            10-way code for InfoGAN, none for O-GAN, which refuses codes).
        continuous: the number of continuous codes, each Uniform(-1, 1) (default: 2
            for InfoGAN, 0 for O-GAN, which refuses codes).
        lambda_info: weight lambda of the information term; 0 gives a plain GAN.
        lambda_cont: weight of the continuous codes' NLL relative to the categorical cross-entropy.
        preset: a key of :data:`PRESETS`, filling ``lambda_invariance`` and ``lambda_iic``
            when they are not given: ``best`` (both terms at 1) or ``paper`` (both off).
        lambda_invariance: weight of the invariance term: the categorical codes'
            cross-entropy on randomly warped fakes (:mod:`infogan.augment`); 0 (the paper) turns it off.
        lambda_iic: weight of the clustering term on real images: minus the mutual
            information between Q's categorical codes for a real image and for a
            warped copy of it (IIC, :class:`dim.mi.PairedCategoricalMI`); 0 (the paper) turns it off.
        lambda_corr: O-GAN's weight lambda of ``-corr(z, E(G(z)))`` in both steps
            (default 0.5, the O-GAN code's); InfoGAN refuses it.
        learn_sigma: Q predicts a (clamped) log sigma per continuous code instead of sigma = 1.
        separate_q: Q gets its own trunk instead of sharing D's.
        lr_d: Adam learning rate of D.
        lr_g: Adam learning rate of G (with Q).
        beta1: Adam's beta1 (both optimisers).
        beta2: Adam's beta2 (both optimisers).
        log_every: steps between metrics rows, progress-bar updates and divergence checks.
        sample_every: steps between ``samples/step_NNNNNN.png`` grids.
        checkpoint_every: steps between checkpoints (one is always written at the end).
        max_loss: a D or G loss averaged over a logging window above this counts as divergence.
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    out: str | None = None
    image_size: int | None = None
    channels: int | None = None
    iterations: int = 5000
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    objective: str = INFOGAN_OBJECTIVE
    noise_dim: int = 62
    noise: str | None = None
    categorical: tuple[int, ...] | None = None
    continuous: int | None = None
    lambda_info: float = 1.0
    lambda_cont: float = 1.0
    preset: str = "best"
    lambda_invariance: float | None = None
    lambda_iic: float | None = None
    lambda_corr: float | None = None
    learn_sigma: bool = False
    separate_q: bool = False
    lr_d: float = 2e-4
    lr_g: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    max_loss: float = 100.0

    def resolved(self) -> TrainConfig:
        """A checked copy with the objective's and the preset's values filled in; ``self`` is left as it is.

        Settings left at ``None`` are filled from :data:`OBJECTIVE_DEFAULTS` (the
        objective's latent space, and O-GAN's ``lambda_corr``), then
        ``lambda_invariance`` and ``lambda_iic`` from :data:`PRESETS` (0 without a
        categorical code, the one both terms act on). Filling in is idempotent, so
        a resolved config (e.g. one saved in a checkpoint) resolves to itself.

        Raises:
            ValueError: for an unknown objective, preset or noise prior, a setting
                the objective has no use for (O-GAN: codes, Q's options, InfoGAN's
                weights; InfoGAN: ``lambda_corr``), or a value out of range; the
                message says what to change.
        """
        for name, choices in (("objective", OBJECTIVES), ("preset", PRESETS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        if self.objective == OGAN_OBJECTIVE:
            self._check_ogan()
        elif self.lambda_corr is not None:
            raise ValueError("lambda_corr weighs O-GAN's correlation term: pass --objective ogan, or drop --lambda-corr")
        defaults = OBJECTIVE_DEFAULTS[self.objective]
        config = replace(self, **{name: value for name, value in defaults.items() if getattr(self, name) is None})
        terms = {  # both terms act on a categorical code: off without one
            name: value if config.categorical else 0.0
            for name, value in PRESETS[config.preset].items() if getattr(config, name) is None
        }
        config = replace(config, **terms, categorical=tuple(int(k) for k in config.categorical))
        for name in ("iterations", "log_every", "sample_every", "checkpoint_every", "lr_d", "lr_g", "max_loss"):
            if not getattr(config, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
        if config.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (BatchNorm needs a batch), got {config.batch_size}")
        for name in ("lambda_info", "lambda_cont", "lambda_invariance", "lambda_iic", "lambda_corr"):
            if getattr(config, name) is not None and getattr(config, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
        for name in ("lambda_invariance", "lambda_iic"):
            if getattr(config, name) and not config.categorical:
                raise ValueError(f"{name} needs a categorical code (it acts on Q's categorical logits): give --categorical")
        if not (0 <= config.beta1 < 1 and 0 <= config.beta2 < 1):
            raise ValueError(f"Adam's betas must lie in [0, 1), got {config.beta1}, {config.beta2}")
        config.latent_spec()  # checks the noise prior and the latent sizes
        return config

    def _check_ogan(self) -> None:
        """Refuse what O-GAN has no use for: codes, Q's options and InfoGAN's terms (before defaults fill in)."""
        if self.categorical or self.continuous:
            raise ValueError("O-GAN's generator reads the noise z alone, without codes: drop --categorical and "
                             "--continuous (or pass --no-categorical --continuous 0)")
        if self.noise_dim < 2:
            raise ValueError(f"O-GAN needs noise_dim >= 2 (the correlation centres z over its dimensions), "
                             f"got {self.noise_dim}")
        for name in ("separate_q", "learn_sigma"):
            if getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} is an option of InfoGAN's Q, and O-GAN has no Q: drop it")
        for name in ("lambda_invariance", "lambda_iic"):
            if getattr(self, name):
                raise ValueError(f"{name} is an InfoGAN term on Q's categorical code, and O-GAN has none: drop it")
        defaults = {f.name: f.default for f in fields(self)}
        for name in ("lambda_info", "lambda_cont"):
            if getattr(self, name) != defaults[name]:
                raise ValueError(f"{name} weighs InfoGAN's information term; O-GAN's weight is --lambda-corr")

    def latent_spec(self) -> LatentSpec:
        """The latent space of a resolved config (:meth:`resolved`), validated; O-GAN's is the noise alone."""
        from infogan.codes import LatentSpec  # here, not at the top: it imports torch

        return LatentSpec(self.noise_dim, self.noise, self.categorical, self.continuous,
                          needs_code=self.objective != OGAN_OBJECTIVE)
