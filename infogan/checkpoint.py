"""Loading trained InfoGAN runs: the whole model, or D's trunk as a feature extractor."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dim.core.checkpoint import load_checkpoint
from dim.core.device import select_device
from dim.core.features import FeatureExtractor
from infogan.config import TrainConfig
from infogan.models import FEATURE_DIM, InfoGAN

CHECKPOINT_KIND = "infogan"


@dataclass
class TrainedRun:
    """A trained InfoGAN in eval mode, with what it was trained on.

    Attributes:
        model: G, D and Q, in eval mode on the requested device.
        config: the run's settings.
        step: the iterations it was trained for.
        classes: the training set's class names (``[]`` when unlabelled).
        path: the checkpoint file.
    """

    model: InfoGAN
    config: TrainConfig
    step: int
    classes: list[str]
    path: Path


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedRun:
    """Load ``checkpoint.pt`` (or a run directory holding one) written by :func:`infogan.train.train`.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if it is not an InfoGAN checkpoint.
    """
    device = select_device(str(device))
    path = Path(path)
    checkpoint = load_checkpoint(path, CHECKPOINT_KIND)
    config, state = TrainConfig.from_dict(checkpoint["config"]), checkpoint["state"]
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
