"""InfoGAN: GANs whose latent codes are made meaningful by a variational MI bound.

The information term comes from the shared module :mod:`dim.mi`.
"""

from dim import __version__

__all__ = ["__version__"]
