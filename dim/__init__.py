"""dim-toolkit: representation learning by mutual-information maximisation.

The package holds three layers, each importing only the ones above it:

* :mod:`dim.mi`: the MI module (critics, negative samplers, bounds, InfoGAN's
  Q bound, the Gaussian prior term, IIC's paired categorical MI);
* :mod:`dim.core`: what every product stands on and that knows none of them:
  images and datasets, run directories and checkpoints, metrics, feature
  extractors and their probes, distributed helpers, grids;
* Deep InfoMax itself: :mod:`dim.config`, :mod:`dim.models`,
  :mod:`dim.objective`, :mod:`dim.train`, :mod:`dim.checkpoint`,
  :mod:`dim.evaluate`, :mod:`dim.embed` and the ``dim`` command (:mod:`dim.cli`).

The other products, ``infogan`` and ``retrieval``, import :mod:`dim.mi` and
:mod:`dim.core` only.

Example:
    >>> import dim
    >>> encoder = dim.load_features("runs/dim-cifar10")  # a FeatureExtractor, eval mode
    >>> features = encoder.embed([Image.open("cat.jpg")])  # (1, 64)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("dim-toolkit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load_features"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that ``import dim.mi`` or ``import dim.core`` does not load DIM's encoders.
    if name == "load_features":
        from dim.checkpoint import load_features

        return load_features
    raise AttributeError(f"module 'dim' has no attribute {name!r}")
