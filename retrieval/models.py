"""Load the model an index is built with, and fingerprint it for the manifest.

An index is only meaningful with the exact network that embedded it: vectors
from two different checkpoints (or from the same checkpoint's ``z`` and its
feature map) live in unrelated spaces. :class:`ModelFingerprint` records what
identifies the features (a hash of the weights plus the feature name and
preprocessing) and, for provenance, the checkpoint path and the file's hash.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dim.core.checkpoint import checkpoint_file
from dim.core.features import FeatureExtractor
from dim.core.registry import load_feature_extractor

_IDENTITY_FIELDS = ("name", "feature_dim", "image_size", "channels", "weights_sha256")


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies a model's features, as stored in an index manifest.

    Attributes:
        name: the feature name (e.g. ``"dim:z"``, ``"infogan:trunk"``).
        feature_dim: length of the vectors.
        image_size: side of the square model input.
        channels: 1 (grey) or 3 (RGB) model input.
        weights_sha256: sha256 over the parameter and buffer tensors (names, shapes, bytes).
        checkpoint: absolute path of the checkpoint file, if the model came from one.
        checkpoint_sha256: sha256 of that file.
    """

    name: str
    feature_dim: int
    image_size: int
    channels: int
    weights_sha256: str
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFingerprint:
        return cls(**{key: data.get(key) for key in cls.__dataclass_fields__})

    def differences(self, other: ModelFingerprint) -> list[str]:
        """Names of the identity fields where ``other`` differs (empty: same features)."""
        return [key for key in _IDENTITY_FIELDS if getattr(self, key) != getattr(other, key)]

    def describe(self) -> str:
        origin = self.checkpoint or "an in-memory model"
        return f"{self.name} from {origin} (weights sha256 {self.weights_sha256[:12]})"


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(module: torch.nn.Module) -> str:
    """Hex sha256 of a module's state dict (names, dtypes, shapes and bytes, in order).

    Independent of the device the module lives on.
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fingerprint(model: FeatureExtractor) -> ModelFingerprint:
    """Fingerprint a feature extractor; the checkpoint fields come from ``model.source``."""
    checkpoint = checkpoint_sha = None
    if model.source is not None and Path(model.source).exists():
        checkpoint = str(checkpoint_file(model.source).resolve())  # a run directory -> its checkpoint.pt
        checkpoint_sha = file_sha256(checkpoint)
    return ModelFingerprint(
        name=model.name,
        feature_dim=int(model.feature_dim),
        image_size=int(model.image_size),
        channels=int(model.channels),
        weights_sha256=weights_sha256(model),
        checkpoint=checkpoint,
        checkpoint_sha256=checkpoint_sha,
    )


def load_model(path: str | os.PathLike, device: str | torch.device | None = "auto") -> FeatureExtractor:
    """Load the feature extractor of any registered model family's checkpoint, in eval mode.

    The checkpoint's ``kind`` picks the loader (:mod:`dim.core.registry`): a DIM
    run gives its encoder's ``z``, an InfoGAN run its discriminator trunk, and a
    new model family plugs in by registering a loader, without changing this package.

    Args:
        path: a run directory or its ``checkpoint.pt``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... (``None`` means ``"auto"``).

    Returns:
        The model, with ``source`` set to the checkpoint file (used by :func:`fingerprint`).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a toolkit checkpoint, or no loader knows its kind.
    """
    return load_feature_extractor(path, device)
