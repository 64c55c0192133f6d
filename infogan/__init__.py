"""InfoGAN: GANs whose latent codes are made meaningful by a variational MI bound; and O-GAN.

Chen et al., *InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets*, NeurIPS 2016. The information term
comes from the shared module :mod:`dim.mi`. The same trainer also trains
O-GAN (Su, arXiv 1903.01931; ``TrainConfig(objective="ogan")``), whose
discriminator doubles as an encoder (:func:`load_encoder`).

Python API (the ``infogan`` command is a thin layer over it)::

    from infogan import TrainConfig, load_feature_extractor
    from infogan.evaluate import evaluate
    from infogan.train import train
    run_dir = train(TrainConfig(dataset="mnist", data_dir="../shared/datasets", iterations=200))
    print(evaluate(run_dir)["cat_accuracy"])
    features = load_feature_extractor(run_dir)  # D's 1024-d trunk, for dim-search
    # O-GAN: train(TrainConfig(..., objective="ogan")), then load_encoder(run_dir) gives E(x)
"""

from dim import __version__
from infogan.checkpoint import (
    TrainedRun,
    load_encoder,
    load_feature_extractor,
    load_run,
)
from infogan.codes import Latent, LatentSpec
from infogan.config import TrainConfig
from infogan.models import OGAN, InfoGAN
from infogan.objective import InfoLoss, OGANObjective, pearson_correlation
from infogan.sample import (
    reconstruct,
    save_reconstruction,
    save_traversal,
    traversal_images,
)
from infogan.train import Trainer, TrainingDiverged, TrainResult, make_trainer

__all__ = [
    "OGAN",
    "InfoGAN",
    "InfoLoss",
    "Latent",
    "LatentSpec",
    "OGANObjective",
    "TrainConfig",
    "TrainResult",
    "TrainedRun",
    "Trainer",
    "TrainingDiverged",
    "__version__",
    "load_encoder",
    "load_feature_extractor",
    "load_run",
    "make_trainer",
    "pearson_correlation",
    "reconstruct",
    "save_reconstruction",
    "save_traversal",
    "traversal_images",
]
