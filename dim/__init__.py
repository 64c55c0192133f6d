"""Deep InfoMax: unsupervised feature learning by mutual-information maximisation.

The shared mutual-information pieces (critics, negative samplers, bounds, the
variational Q bound and the Gaussian prior term) live in :mod:`dim.mi`.

Example:
    >>> import dim
    >>> encoder = dim.load_encoder("runs/dim-cifar10")  # a FeatureExtractor, eval mode
    >>> features = encoder.embed([Image.open("cat.jpg")])  # (1, 64)
"""

from importlib.metadata import PackageNotFoundError, version

from dim.models import load_encoder

try:
    __version__ = version("dim-toolkit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load_encoder"]
