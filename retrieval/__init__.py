"""Image similarity search: embed a folder with a trained encoder and index it with Faiss."""

from dim import __version__

__all__ = ["__version__"]
