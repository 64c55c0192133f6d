"""The settings of an InfoGAN run (kept free of torch imports, so the CLI starts fast)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infogan.codes import LatentSpec


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

    The defaults are the InfoGAN paper's MNIST networks, latents and schedule,
    with the objective of the ``best`` preset; ``preset="paper"`` gives the
    paper's objective.

    Args:
        dataset: a dataset name (``mnist``, ``fashion-mnist``, ``cifar10``, ``shapes``, ...)
            or an image-folder path, as :func:`dim.core.data.load_dataset` takes it.
        data_dir: root of the named datasets (default ``$DIM_DATA_DIR``, else ``./data``).
        out: the run directory (default ``runs/infogan-<dataset>-<time>``).
        image_size: side of the training images (default: the dataset's own).
        channels: 1 or 3 (default: the dataset's own).
        iterations: number of D + G steps (the official schedule is 5,000).
        batch_size: images per step for D and for G.
        seed: seeds every RNG; the same seed and device give the same run.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ...
        noise_dim: number of incompressible noise variables z (see :class:`~infogan.codes.LatentSpec`).
        noise: prior of z, ``uniform`` or ``normal``.
        categorical: the number of categories of each categorical code.
        continuous: the number of continuous codes, each Uniform(-1, 1).
        lambda_info: weight lambda of the information term; 0 gives a plain GAN.
        lambda_cont: weight of the continuous codes' NLL relative to the categorical cross-entropy.
        preset: a key of :data:`PRESETS`, filling ``lambda_invariance`` and ``lambda_iic``
            when they are not given: ``best`` (both terms at 1) or ``paper`` (both off).
        lambda_invariance: weight of the invariance term: the categorical codes'
            cross-entropy on randomly warped fakes (:mod:`infogan.augment`); 0 (the paper) turns it off.
        lambda_iic: weight of the clustering term on real images: minus the mutual
            information between Q's categorical codes for a real image and for a
            warped copy of it (IIC, :class:`dim.mi.PairedCategoricalMI`); 0 (the paper) turns it off.
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
    noise_dim: int = 62
    noise: str = "uniform"
    categorical: tuple[int, ...] = (10,)
    continuous: int = 2
    lambda_info: float = 1.0
    lambda_cont: float = 1.0
    preset: str = "best"
    lambda_invariance: float | None = None
    lambda_iic: float | None = None
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

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:  # both terms act on a categorical code: off without one
                setattr(self, name, value if self.categorical else 0.0)
        self.categorical = tuple(int(k) for k in self.categorical)
        positive = ("iterations", "log_every", "sample_every", "checkpoint_every", "lr_d", "lr_g", "max_loss")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (BatchNorm needs a batch), got {self.batch_size}")
        for name in ("lambda_info", "lambda_cont", "lambda_invariance", "lambda_iic"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lambda_invariance", "lambda_iic"):
            if getattr(self, name) and not self.categorical:
                raise ValueError(f"{name} needs a categorical code (it acts on Q's categorical logits): give --categorical")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"Adam's betas must lie in [0, 1), got {self.beta1}, {self.beta2}")
        self.latent_spec()  # validates the latent sizes

    def latent_spec(self) -> LatentSpec:
        """The latent space these settings describe (validated)."""
        from infogan.codes import LatentSpec  # here, not at the top: it imports torch

        return LatentSpec(self.noise_dim, self.noise, self.categorical, self.continuous)

    def to_dict(self) -> dict[str, Any]:
        """JSON- and ``weights_only``-safe plain dict."""
        values = asdict(self)
        values["categorical"] = list(self.categorical)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; ignores keys that are not config fields (e.g. dataset facts)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})
