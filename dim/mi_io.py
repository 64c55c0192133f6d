"""The files of ``dim mi``: read two paired arrays, draw an estimate's curves.

:mod:`dim.mi` works on tensors only; reading ``.npy``, ``.npz`` and ``.csv``
files and drawing pictures live here, in the product layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dim.core.atomic import atomic_write
from dim.mi.estimate import MIEstimate

ARRAY_SUFFIXES = (".npy", ".npz", ".csv")


def load_array(spec: str) -> np.ndarray:
    """Read one sample per row from ``spec`` as a float64 ``(N, D)`` array.

    ``spec`` is one of:

    * ``file.npy``: a saved array;
    * ``file.npz:key``: the array ``key`` of a ``.npz`` archive (the key may be
      left out when the archive holds a single array);
    * ``file.csv``: comma-separated numbers, one sample per row; a first row
      that is not all numbers is a header and is skipped.

    A 1-D array is one column; an array of more dimensions keeps its first as
    the samples and flattens the rest (``(N, H, W)`` -> ``(N, H*W)``).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for another suffix, a missing or ambiguous ``.npz`` key, a
            value that is not a number, or an empty array.
    """
    path, key = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and head.lower().endswith(".npz"):
        path, key = head, tail
    suffix = Path(path).suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ValueError(f"{spec}: expected a {', '.join(ARRAY_SUFFIXES)} file (an .npz key as file.npz:key)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if suffix == ".npy":
        values = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if key is None and len(archive.files) != 1:
                raise ValueError(f"{path} holds {len(archive.files)} arrays ({', '.join(archive.files)}); "
                                 f"name one as {path}:KEY")
            key = archive.files[0] if key is None else key
            if key not in archive.files:
                raise ValueError(f"{path} has no array {key!r}; it holds {', '.join(archive.files)}")
            values = archive[key]
    else:
        values = _load_csv(path)
    if values.size == 0:
        raise ValueError(f"{spec} holds no values")
    if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
        raise ValueError(f"{spec} holds {values.dtype} values; numbers are needed")
    values = values.astype(np.float64)
    return values.reshape(len(values), -1) if values.ndim != 1 else values[:, None]


def _load_csv(path: str) -> np.ndarray:
    with open(path, newline="") as handle:
        first = handle.readline()
    try:
        [float(cell) for cell in first.split(",")]
        header = 0
    except ValueError:
        header = 1
    try:
        return np.loadtxt(path, delimiter=",", skiprows=header, ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path}: {error} (every cell after an optional header row must be a number)") from error


def plot_estimate(result: MIEstimate, out: str | os.PathLike, title: str = "") -> Path | None:
    """Draw each fold's validation estimate against the step, with the estimate, its interval and the baselines.

    Solid lines are the validation estimates (dots mark the step each fold
    kept), faint lines the same bound read on training pairs; the band is the
    interval, dashed lines the baselines. Needs matplotlib (the ``plots``
    extra); without it nothing is drawn.

    Returns:
        The PNG written (atomically), or ``None`` without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is an optional extra
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for f, fold in enumerate(result.folds):
        color = colors[f % len(colors)]
        axis.plot(fold.steps, fold.train_mi, color=color, alpha=0.3, linewidth=1)
        axis.plot(fold.steps, fold.validation_mi, color=color, linewidth=1.5, label=f"fold {f + 1} validation")
        if fold.best_step in fold.steps:
            axis.plot(fold.best_step, fold.validation_mi[fold.steps.index(fold.best_step)], "o", color=color)
    axis.axhspan(*result.interval, color="black", alpha=0.1)
    axis.axhline(result.nats, color="black", linewidth=1.5,
                 label=f"held-out estimate {result.nats:.3f} nats ({result.confidence:.0%} interval shaded)")
    for (name, value), style in zip(result.baselines.items(), ("--", ":")):
        axis.axhline(value, color="gray", linestyle=style, linewidth=1, label=f"{name} baseline {value:.3f}")
    axis.set_xlabel("step")
    axis.set_ylabel("MI estimate (nats)")
    axis.set_title(title or "validation estimate per fold (faint: on training pairs)", fontsize=10)
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    out = Path(out)
    atomic_write(out, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return out
