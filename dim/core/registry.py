"""Which loader turns a checkpoint of each kind into a :class:`~dim.core.features.FeatureExtractor`.

Search (``dim-search``) and embedding know no model family: they read a
checkpoint's ``kind`` and ask this registry for its loader. A product makes
its checkpoints searchable by declaring a loader in its package metadata,
under the entry-point group :data:`ENTRY_POINT_GROUP`::

    [project.entry-points."dim_toolkit.feature_loaders"]
    dim = "dim.checkpoint:load_encoder"
    mygan = "mygan.checkpoint:load_feature_extractor"

or, at run time, with :func:`register_feature_loader`. A loader is called as
``loader(path, device=device)`` with the checkpoint file and a
``torch.device`` and returns the extractor, in eval mode.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import entry_points

import torch

from dim.core.checkpoint import checkpoint_file, load_checkpoint
from dim.core.device import select_device
from dim.core.features import FeatureExtractor

ENTRY_POINT_GROUP = "dim_toolkit.feature_loaders"

FeatureLoader = Callable[..., FeatureExtractor]
_registered: dict[str, FeatureLoader] = {}


def register_feature_loader(kind: str, loader: FeatureLoader) -> None:
    """Make checkpoints whose ``kind`` is ``kind`` loadable as features (overrides an entry point)."""
    if not kind:
        raise ValueError("a checkpoint kind must be a non-empty string")
    _registered[kind] = loader


def feature_loader_kinds() -> list[str]:
    """Every kind that has a loader: the registered ones and the installed entry points, sorted."""
    return sorted(set(_registered) | {point.name for point in entry_points(group=ENTRY_POINT_GROUP)})


def feature_loader(kind: str) -> FeatureLoader:
    """The loader of checkpoints of ``kind``.

    Raises:
        ValueError: if no loader is registered for ``kind``, naming the kinds that have one.
    """
    if kind in _registered:
        return _registered[kind]
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == kind:
            return point.load()
    raise ValueError(
        f"no feature loader for {kind!r} checkpoints (known kinds: {', '.join(feature_loader_kinds()) or 'none'}); "
        f"a model family registers one under the {ENTRY_POINT_GROUP!r} entry points or with "
        f"dim.core.registry.register_feature_loader"
    )


def checkpoint_kind(path: str | os.PathLike) -> str:
    """The ``kind`` of a toolkit checkpoint that has a feature loader (read through a memory map: no weights load).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a toolkit checkpoint, or no loader knows its kind.
    """
    return load_checkpoint(path, kind=feature_loader_kinds(), mmap=True)["kind"]


def load_feature_extractor(path: str | os.PathLike, device: str | torch.device | None = "auto") -> FeatureExtractor:
    """Load any registered model family's checkpoint as a feature extractor, in eval mode.

    Args:
        path: a run directory or its ``checkpoint.pt``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... (``None`` means ``"auto"``).

    Returns:
        The extractor on ``device``, with ``source`` set to the checkpoint file.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a toolkit checkpoint, or its kind has no loader.
    """
    file = checkpoint_file(path)
    loader = feature_loader(checkpoint_kind(file))
    device = select_device("auto" if device is None else str(device))
    extractor = loader(file, device=device)
    if extractor.source is None:
        extractor.source = str(file)
    return extractor.to(device).eval()
