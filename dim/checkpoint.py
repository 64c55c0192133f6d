"""DIM's checkpoints: the kinds ``dim train`` writes, a run loaded back, and its features.

The checkpoint is the toolkit's one layout (:mod:`dim.core.checkpoint`) with a
kind from :data:`KINDS`. :func:`load_run` rebuilds the whole model
(:func:`dim.models.build_model`: the encoder and its MI terms);
:func:`load_features` is registered as the feature loader of DIM's kinds
(``pyproject.toml``), so ``dim eval``, ``dim embed`` and ``dim-search`` take
DIM runs through the registry (:mod:`dim.core.registry`).
"""

from __future__ import annotations

import os

import torch

from dim.config import TrainConfig
from dim.core.checkpoint import checkpoint_file, load_checkpoint
from dim.core.device import select_device
from dim.core.features import FeatureExtractor
from dim.core.runs import TrainedRun
from dim.models import build_model, check_feature, feature_extractor

# The checkpoint kinds DIM writes (the first is ``dim train``'s); defined here only.
KINDS: tuple[str, ...] = ("dim",)


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedRun:
    """Load a DIM run: its :class:`dim.objective.DeepInfoMax` (encoder and critics) in eval mode, and its facts.

    Args:
        path: a run directory or its ``checkpoint.pt``.
        device: where to put the model (``auto`` picks an accelerator).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a DIM checkpoint.
    """
    file = checkpoint_file(path)
    checkpoint = load_checkpoint(file, kind=KINDS)
    config, state = TrainConfig(**checkpoint["config"]).resolved(), checkpoint["state"]
    shape = state["encoder_config"]
    model = build_model(config, shape["channels"], shape["image_size"])
    model.load_state_dict(checkpoint["modules"]["model"])
    model.to(select_device(str(device))).eval()
    return TrainedRun(model, config, int(checkpoint["step"]), list(state["classes"]), file, checkpoint["kind"])


def load_features(
    path: str | os.PathLike, device: str | torch.device | None = None, feature: str = "z"
) -> FeatureExtractor:
    """Load a trained DIM encoder as a :class:`dim.core.features.FeatureExtractor` in eval mode.

    Example:
        >>> encoder = dim.load_features("runs/dim-cifar10")
        >>> batch = torch.stack([encoder.preprocess(Image.open(p)) for p in paths])
        >>> features = encoder(batch)  # (B, 64)

    Args:
        path: a run directory or its ``checkpoint.pt``.
        device: where to put the network (default: the CPU; ``auto`` picks an accelerator).
        feature: which features to return: ``z`` (the code mean, default),
            ``fc`` (fully connected features) or ``conv`` (flattened last conv map).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a DIM checkpoint, or ``feature`` is unknown.
    """
    check_feature(feature)
    run = load_run(path, device or "cpu")
    return feature_extractor(run.model.encoder, feature, run.config.precision, source=str(run.path))
