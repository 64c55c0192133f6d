"""InfoGAN: GANs whose latent codes are made meaningful by a variational MI bound; and O-GAN.

Chen et al., *InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets*, NeurIPS 2016. The information term
comes from the shared module :mod:`dim.mi`. The same trainer also trains
O-GAN (Su, arXiv 1903.01931; ``TrainConfig(objective="ogan")``), whose
discriminator doubles as an encoder E(x).

Python API (the ``infogan`` command is a thin layer over it)::

    from infogan import TrainConfig, load_features
    from infogan.evaluate import evaluate
    from infogan.train import train
    result = train(TrainConfig(dataset="mnist", data_dir="data", iterations=200))  # MNIST under ./data
    print(evaluate(result.run_dir)["cat_accuracy"])
    features = load_features(result.run_dir)  # D's 1024-d trunk, for dim-search
    # O-GAN: train(TrainConfig(..., objective="ogan")); load_features then gives E(x)
"""

from dim import __version__
from infogan.checkpoint import KINDS, load_features, load_run
from infogan.codes import Latent, LatentSpec
from infogan.config import PRESETS, RESUMABLE, TrainConfig
from infogan.models import OGAN, InfoGAN, build_model
from infogan.objective import (
    GANObjective,
    InfoGANObjective,
    InfoLoss,
    OGANObjective,
    build_objective,
    pearson_correlation,
)
from infogan.sample import (
    reconstruct,
    save_reconstruction,
    save_traversal,
    traversal_images,
)
from infogan.train import Trainer, TrainingDiverged

__all__ = [
    "KINDS",
    "OGAN",
    "PRESETS",
    "RESUMABLE",
    "GANObjective",
    "InfoGAN",
    "InfoGANObjective",
    "InfoLoss",
    "Latent",
    "LatentSpec",
    "OGANObjective",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "__version__",
    "build_model",
    "build_objective",
    "load_features",
    "load_run",
    "pearson_correlation",
    "reconstruct",
    "save_reconstruction",
    "save_traversal",
    "traversal_images",
]
