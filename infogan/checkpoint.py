"""Loading trained runs: the whole model, or its features (InfoGAN: D's trunk; O-GAN: the encoding E(x)).

A run's checkpoint kind is its objective, one of :data:`KINDS`. Both kinds
have one feature loader, :func:`load_features`, registered for each in the
``dim_toolkit.feature_loaders`` entry points (:mod:`dim.core.registry`), so
``dim-search``, ``dim embed`` and the kNN evaluation take either kind of run.
"""

from __future__ import annotations

import os

import torch

from dim.core.checkpoint import checkpoint_file, load_checkpoint
from dim.core.device import select_device
from dim.core.features import FeatureExtractor
from dim.core.runs import TrainedRun
from infogan.config import OBJECTIVES, TrainConfig
from infogan.models import FEATURE_DIM, OGAN, build_model

# The checkpoint kinds infogan writes: each run's objective ("infogan", "ogan"); defined here only.
KINDS: tuple[str, ...] = tuple(OBJECTIVES)
TRUNKS = ("d", "q")  # the trunks of an InfoGAN run that load_features offers: D's, or Q's own


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedRun:
    """Load ``checkpoint.pt`` (or a run directory holding one) written by :func:`infogan.train.train`.

    Args:
        path: a run directory or its ``checkpoint.pt``.
        device: where to put the model (``auto`` picks an accelerator).

    Returns:
        The run: its model (:func:`infogan.models.build_model`'s :class:`~infogan.models.InfoGAN`
        or :class:`~infogan.models.OGAN`) in eval mode on ``device``, resolved settings,
        step, class names, checkpoint file and kind.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if it is not a checkpoint of one of :data:`KINDS`.
    """
    file = checkpoint_file(path)
    checkpoint = load_checkpoint(file, KINDS)
    config, state = TrainConfig(**checkpoint["config"]).resolved(), checkpoint["state"]
    model = build_model(config, state["channels"], state["image_size"])
    model.load_state_dict(checkpoint["modules"]["model"])
    model.to(select_device(str(device))).eval()
    return TrainedRun(model, config, int(checkpoint["step"]), list(state["classes"]), file, checkpoint["kind"])


def load_features(
    path: str | os.PathLike, device: str | torch.device | None = None, trunk: str | None = None
) -> FeatureExtractor:
    """A trained run's features as a :class:`dim.core.features.FeatureExtractor`, in eval mode.

    * An InfoGAN run: D's trunk (or Q's), its 1024-d FC activations after BN
      and lReLU, the layer that D's real/fake head and Q's head both read.
    * An O-GAN run: the encoder's ``noise_dim`` outputs ``E(x)`` (before their
      mean, the real/fake score), the encoding that O-GAN's correlation term
      makes correlate with the noise z that G turns into x.

    Args:
        path: a run directory or its ``checkpoint.pt``.
        device: where to put the network (default: the CPU; ``auto`` picks an accelerator).
        trunk: InfoGAN runs only: ``"d"`` for D's trunk (the default) or ``"q"``
            for Q's (the same one unless the run used ``separate_q``).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not an InfoGAN or O-GAN checkpoint, ``trunk`` is
            not one of :data:`TRUNKS`, or ``trunk`` is given for an O-GAN run.
    """
    if trunk is not None and trunk not in TRUNKS:
        raise ValueError(f"unknown trunk {trunk!r}; choose one of {', '.join(TRUNKS)}")
    run = load_run(path, device or "cpu")
    model = run.model
    if isinstance(model, OGAN):
        if trunk is not None:
            raise ValueError(f"{run.path} is an O-GAN run: its features are the encoding E(x), which has no trunk "
                             f"option; leave trunk out")
        network, feature_dim, name = model.encoder, model.spec.noise_dim, "ogan:encoding"
    else:
        trunk = trunk or "d"
        network = model.q_trunk if trunk == "q" and model.q_trunk is not None else model.trunk
        feature_dim, name = FEATURE_DIM, f"infogan:{trunk}-trunk"
    extractor = FeatureExtractor(
        network, image_size=model.image_size, channels=model.channels, feature_dim=feature_dim, name=name,
        source=str(run.path),
    )
    return extractor.eval()
