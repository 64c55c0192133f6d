"""DIM's checkpoints: what ``dim train`` saves, and the trained encoder loaded back as features.

The checkpoint is the toolkit's one layout (:mod:`dim.core.checkpoint`) with
``kind = "dim"``; :func:`load_encoder` is registered as the loader of that
kind, so ``dim-search`` and ``dim embed`` take DIM runs through the registry.
"""

from __future__ import annotations

import os

import torch

from dim.core.checkpoint import load_checkpoint
from dim.core.features import FeatureExtractor
from dim.models import Encoder, FeatureHead, check_feature

CHECKPOINT_KIND = "dim"


def encoder_from_checkpoint(checkpoint: dict) -> Encoder:
    """Rebuild the trained encoder stored in a DIM checkpoint dict (see :func:`dim.train.train`)."""
    encoder = Encoder(**checkpoint["state"]["encoder_config"])
    prefix = "encoder."
    weights = checkpoint["modules"]["model"]  # DeepInfoMax's: the encoder and the critics
    encoder.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    return encoder


def extractor_from_checkpoint(checkpoint: dict, feature: str = "z", source: str | None = None) -> FeatureExtractor:
    """Wrap the encoder of a loaded DIM checkpoint dict as a :class:`FeatureExtractor` (eval mode, CPU)."""
    check_feature(feature)
    encoder = encoder_from_checkpoint(checkpoint).to(memory_format=torch.channels_last)
    extractor = FeatureExtractor(
        FeatureHead(encoder, feature, checkpoint["config"].get("precision", "auto")),
        image_size=encoder.image_size,
        channels=encoder.channels,
        feature_dim=encoder.feature_dim(feature),
        name=f"dim:{feature}",
        source=source,
    )
    return extractor.eval()


def load_encoder(
    path: str | os.PathLike, feature: str = "z", device: str | torch.device | None = None
) -> FeatureExtractor:
    """Load a trained DIM encoder as a :class:`dim.core.features.FeatureExtractor` in eval mode.

    Example:
        >>> encoder = dim.load_encoder("runs/dim-cifar10")
        >>> batch = torch.stack([encoder.preprocess(Image.open(p)) for p in paths])
        >>> features = encoder(batch)  # (B, 64)

    Args:
        path: a run directory or its ``checkpoint.pt``.
        feature: which features to return: ``z`` (the code mean, default),
            ``fc`` (fully connected features) or ``conv`` (flattened last conv map).
        device: where to put the network (default: the CPU).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a DIM checkpoint, or ``feature`` is unknown.
    """
    check_feature(feature)
    checkpoint = load_checkpoint(path, kind=CHECKPOINT_KIND)
    return extractor_from_checkpoint(checkpoint, feature, source=str(path)).to(device or "cpu")
