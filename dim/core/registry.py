"""Which loader turns a checkpoint of each kind into a :class:`~dim.core.features.FeatureExtractor`,
and which trainer makes a model of each kind from a folder of images.

Search (``dim-search``) and embedding know no model family: they read a
checkpoint's ``kind`` and ask this registry for its loader. A product makes
its checkpoints searchable by declaring a loader in its package metadata,
under the entry-point group :data:`FEATURE_LOADER_GROUP`::

    [project.entry-points."dim_toolkit.feature_loaders"]
    dim = "dim.checkpoint:load_features"
    mygan = "mygan.checkpoint:load_feature_extractor"

or, at run time, with :func:`register_feature_loader`. A loader is called as
``loader(path, device=device, **options)`` with the checkpoint file, a
``torch.device`` and the caller's options (DIM's loader takes ``feature``) and
returns the extractor, in eval mode.

``dim-search build FOLDER`` without a model trains one first, by kind name, with
the trainer registered under :data:`TRAINER_GROUP` (or with
:func:`register_folder_trainer`)::

    [project.entry-points."dim_toolkit.trainers"]
    dim = "dim.train:train_folder"

A trainer is called as ``trainer(folder, out, minutes=..., max_steps=...,
image_size=..., device=..., progress=...)`` (see :data:`FolderTrainer`) and
returns the run directory it wrote, whose checkpoint its kind's feature loader
loads.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import torch

from dim.core.checkpoint import checkpoint_file, load_checkpoint
from dim.core.device import select_device
from dim.core.features import FeatureExtractor

FEATURE_LOADER_GROUP = "dim_toolkit.feature_loaders"
TRAINER_GROUP = "dim_toolkit.trainers"

FeatureLoader = Callable[..., FeatureExtractor]
# ``trainer(folder, out, *, minutes, max_steps, image_size, device, progress) -> run directory``: train a
# model of the kind on every image under ``folder`` (a path) into the new run directory ``out`` for at most
# ``minutes`` of training and ``max_steps`` steps (``None``: no step limit), at ``image_size`` px (``None``:
# chosen from the images), on ``device``, with progress bars when ``progress``.
FolderTrainer = Callable[..., Path]
_registered: dict[str, FeatureLoader] = {}
_registered_trainers: dict[str, FolderTrainer] = {}
_Entry = TypeVar("_Entry")


def _kinds(group: str, registered: dict[str, Any]) -> list[str]:
    """The kinds registered at run time and declared under the entry-point ``group``, sorted."""
    return sorted(set(registered) | {point.name for point in entry_points(group=group)})


def _lookup(group: str, registered: dict[str, _Entry], kind: str) -> _Entry | None:
    """The entry of ``kind``: registered at run time first, else the installed entry point; ``None`` if neither."""
    if kind in registered:
        return registered[kind]
    for point in entry_points(group=group):
        if point.name == kind:
            return point.load()
    return None


def register_feature_loader(kind: str, loader: FeatureLoader) -> None:
    """Make checkpoints whose ``kind`` is ``kind`` loadable as features (overrides an entry point)."""
    if not kind:
        raise ValueError("a checkpoint kind must be a non-empty string")
    _registered[kind] = loader


def feature_loader_kinds() -> list[str]:
    """Every kind that has a loader: the registered ones and the installed entry points, sorted."""
    return _kinds(FEATURE_LOADER_GROUP, _registered)


def feature_loader(kind: str) -> FeatureLoader:
    """The loader of checkpoints of ``kind``.

    Raises:
        ValueError: if no loader is registered for ``kind``, naming the kinds that have one.
    """
    loader = _lookup(FEATURE_LOADER_GROUP, _registered, kind)
    if loader is None:
        raise ValueError(
            f"no feature loader for {kind!r} checkpoints (known kinds: {', '.join(feature_loader_kinds()) or 'none'}); "
            f"a model family registers one under the {FEATURE_LOADER_GROUP!r} entry points or with "
            f"dim.core.registry.register_feature_loader"
        )
    return loader


def register_folder_trainer(kind: str, trainer: FolderTrainer) -> None:
    """Make ``kind`` trainable on a folder of images by name (overrides an entry point)."""
    if not kind:
        raise ValueError("a model kind must be a non-empty string")
    _registered_trainers[kind] = trainer


def folder_trainer_kinds() -> list[str]:
    """Every kind that has a folder trainer: the registered ones and the installed entry points, sorted."""
    return _kinds(TRAINER_GROUP, _registered_trainers)


def folder_trainer(kind: str) -> FolderTrainer:
    """The function that trains a model of ``kind`` on a folder of images (see :data:`FolderTrainer`).

    Raises:
        ValueError: if no trainer is registered for ``kind``, naming the kinds that have one.
    """
    trainer = _lookup(TRAINER_GROUP, _registered_trainers, kind)
    if trainer is None:
        raise ValueError(
            f"no folder trainer for {kind!r} models (known kinds: {', '.join(folder_trainer_kinds()) or 'none'}); "
            f"a model family registers one under the {TRAINER_GROUP!r} entry points or with "
            f"dim.core.registry.register_folder_trainer"
        )
    return trainer


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
