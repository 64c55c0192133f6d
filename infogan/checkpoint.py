"""Loading trained runs: the whole model, or its features (InfoGAN: D's trunk; O-GAN: the encoding E(x)).

A run's checkpoint kind is its objective: ``"infogan"`` or ``"ogan"``; each
kind has its feature loader in the ``dim_toolkit.feature_loaders`` entry points
(:mod:`dim.core.registry`): :func:`load_feature_extractor` and :func:`load_encoder`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dim.core.checkpoint import load_checkpoint
from dim.core.device import select_device
from dim.core.features import FeatureExtractor
from infogan.config import TrainConfig
from infogan.models import FEATURE_DIM, OGAN, InfoGAN

CHECKPOINT_KIND = "infogan"
OGAN_CHECKPOINT_KIND = "ogan"
CHECKPOINT_KINDS = (CHECKPOINT_KIND, OGAN_CHECKPOINT_KIND)  # = infogan.config.OBJECTIVES


@dataclass
class TrainedRun:
    """A trained InfoGAN (or O-GAN) in eval mode, with what it was trained on.

    Attributes:
        model: G, D and Q (O-GAN: G and the encoder E), in eval mode on the requested device.
        config: the run's settings.
        step: the iterations it was trained for.
        classes: the training set's class names (``[]`` when unlabelled).
        path: the checkpoint file.
    """

    model: InfoGAN | OGAN
    config: TrainConfig
    step: int
    classes: list[str]
    path: Path


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedRun:
    """Load ``checkpoint.pt`` (or a run directory holding one) written by :func:`infogan.train.train`.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if it is neither an InfoGAN nor an O-GAN checkpoint.
    """
    device = select_device(str(device))
    path = Path(path)
    checkpoint = load_checkpoint(path, CHECKPOINT_KINDS)
    config, state = TrainConfig.from_dict(checkpoint["config"]), checkpoint["state"]
    if checkpoint["kind"] == OGAN_CHECKPOINT_KIND:
        model: InfoGAN | OGAN = OGAN(config.latent_spec(), state["channels"], state["image_size"])
    else:
        model = InfoGAN(
            config.latent_spec(), state["channels"], state["image_size"], config.separate_q, config.learn_sigma
        )
    model.load_state_dict(checkpoint["modules"]["model"])
    model.to(device).eval()
    file = path / "checkpoint.pt" if path.is_dir() else path
    return TrainedRun(model, config, int(checkpoint["step"]), list(state["classes"]), file)


def load_feature_extractor(
    path: str | os.PathLike, trunk: str = "d", device: str | torch.device = "cpu"
) -> FeatureExtractor:
    """D's (or Q's) trunk of a trained run as a :class:`dim.core.features.FeatureExtractor`, in eval mode.

    The features are the trunk's 1024-d FC activations (after BN and lReLU),
    the layer that D's real/fake head and Q's head both read.

    Args:
        path: ``checkpoint.pt`` or its run directory.
        trunk: ``"d"`` for D's trunk, ``"q"`` for Q's (the same one unless the
            run used ``separate_q``).
        device: where to put the network (``auto`` picks an accelerator).
    """
    if trunk not in ("d", "q"):
        raise ValueError(f"trunk must be 'd' or 'q', got {trunk!r}")
    run = load_run(path, device)
    if run.config.objective == "ogan":
        raise ValueError(f"{run.path} is an O-GAN run: its features are the encoding E(x); load them with "
                         f"infogan.load_encoder (dim-search and dim embed do so by themselves)")
    network = run.model.q_trunk if trunk == "q" and run.model.q_trunk is not None else run.model.trunk
    extractor = FeatureExtractor(
        network,
        image_size=run.model.image_size,
        channels=run.model.channels,
        feature_dim=FEATURE_DIM,
        name=f"infogan:{trunk}-trunk",
        source=str(run.path),
    )
    return extractor.eval()


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> FeatureExtractor:
    """An O-GAN run's discriminator as a :class:`dim.core.features.FeatureExtractor`: ``E(x)``, in eval mode.

    The features are D's ``noise_dim`` outputs ``E(x)`` (before their mean, the
    real/fake score): the encoding that O-GAN's correlation term makes
    correlate with the noise z that G turns into x. This is the loader of the
    ``"ogan"`` checkpoint kind, so ``dim-search build`` and ``dim embed`` take O-GAN runs.

    Args:
        path: ``checkpoint.pt`` or its run directory.
        device: where to put the network (``auto`` picks an accelerator).

    Raises:
        ValueError: if the checkpoint is not an O-GAN run's.
    """
    return encoder_features(load_run(path, device))


def encoder_features(run: TrainedRun) -> FeatureExtractor:
    """The encoder E of a loaded O-GAN run as a feature extractor of ``noise_dim`` features (see :func:`load_encoder`)."""
    if run.config.objective != "ogan":
        raise ValueError(f"{run.path} is an InfoGAN run, not an O-GAN one: its features are D's trunk "
                         f"(infogan.load_feature_extractor)")
    extractor = FeatureExtractor(
        run.model.encoder,
        image_size=run.model.image_size,
        channels=run.model.channels,
        feature_dim=run.model.spec.noise_dim,
        name="ogan:encoding",
        source=str(run.path),
    )
    return extractor.eval()
