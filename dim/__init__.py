"""Deep InfoMax: unsupervised feature learning by mutual-information maximisation.

The shared mutual-information pieces (critics, negative samplers, bounds, the
variational Q bound and the Gaussian prior term) live in :mod:`dim.mi`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dim-toolkit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
