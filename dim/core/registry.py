"""Which loader turns a checkpoint of each kind into a :class:`~dim.core.features.FeatureExtractor`.

Search (``dim-search``) and embedding know no model family: they read a
checkpoint's ``kind`` and ask this registry for its loader. A product makes
its checkpoints searchable by declaring a loader in its package metadata,
under the entry-point group :data:`ENTRY_POINT_GROUP`::

    [project.entry-points."dim_toolkit.feature_loaders"]
    dim = "dim.checkpoint:load_features"
    mygan = "mygan.checkpoint:load_feature_extractor"

or, at run time, with :func:`register_feature_loader`. A loader is called as
``loader(path, device=device, **options)`` with the checkpoint file, a
``torch.device`` and the caller's options (DIM's loader takes ``feature``) and
returns the extractor, in eval mode.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

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


def load_feature_extractor(
    path: str | os.PathLike, device: str | torch.device | None = "auto", **options: Any
) -> FeatureExtractor:
    """Load any registered model family's checkpoint as a feature extractor, in eval mode.

    Args:
        path: a run directory or its ``checkpoint.pt``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... (``None`` means ``"auto"``).
        **options: the kind's own loader options (e.g. DIM's ``feature="fc"``);
            an option the kind's loader does not take is refused.

    Returns:
        The extractor on ``device``, with ``source`` set to the checkpoint file.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a toolkit checkpoint, its kind has no loader,
            or its loader takes no such option.
    """
    file = checkpoint_file(path)
    kind = checkpoint_kind(file)
    loader = feature_loader(kind)
    parameters = list(inspect.signature(loader).parameters.values())[1:]  # after the checkpoint path
    accepted = [parameter.name for parameter in parameters if parameter.name != "device"]
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)
    unknown = [] if takes_any else [name for name in options if name not in accepted]
    if unknown:
        takes = f"its options are {', '.join(accepted)}" if accepted else "it has no options"
        raise ValueError(f"{file} is a {kind!r} checkpoint, whose feature loader takes no option "
                         f"{', '.join(unknown)} ({takes}): leave {', '.join(unknown)} out")
    device = select_device("auto" if device is None else str(device))
    extractor = loader(file, device=device, **options)
    if extractor.source is None:
        extractor.source = str(file)
    return extractor.to(device).eval()
