"""The common interface of trained feature extractors (DIM encoders, InfoGAN discriminator trunks).

Search, embedding export and evaluation only rely on this class, so any
trained network wrapped in it can be used by ``dim embed`` and ``dim-search``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from dim.core.images import image_to_uint8, normalize_images


class FeatureExtractor(nn.Module):
    """A trained network that maps images to feature vectors, with its preprocessing.

    Args:
        network: maps ``(B, channels, image_size, image_size)`` float images in
            [-1, 1] to ``(B, feature_dim)`` features.
        image_size: side of the square input the network was trained on.
        channels: 1 (grey) or 3 (RGB).
        feature_dim: size of the output vectors.
        name: what the features are (e.g. ``"dim:z"``, ``"infogan:trunk"``).
        source: the checkpoint file it was loaded from, if any.

    Example:
        >>> encoder = dim.load_features("runs/cifar10")
        >>> batch = torch.stack([encoder.preprocess(Image.open(p)) for p in paths])
        >>> features = encoder(batch)  # (B, feature_dim)
    """

    def __init__(
        self,
        network: nn.Module,
        image_size: int,
        channels: int,
        feature_dim: int,
        name: str,
        source: str | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.image_size = image_size
        self.channels = channels
        self.feature_dim = feature_dim
        self.name = name
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def preprocess_uint8(self, image: Image.Image) -> Tensor:
        """PIL image -> ``(C, H, W)`` uint8 at the model's size (cheap to batch and move)."""
        return image_to_uint8(image, self.image_size, self.channels)

    def preprocess(self, image: Image.Image) -> Tensor:
        """PIL image -> ``(C, H, W)`` float32 in [-1, 1], ready to stack into a batch."""
        return normalize_images(self.preprocess_uint8(image))

    def forward(self, images: Tensor) -> Tensor:
        """``(B, C, H, W)`` images -> ``(B, feature_dim)``; uint8 input is normalised first."""
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"expected images of shape (B, {self.channels}, H, W), got {tuple(images.shape)}"
            )
        if images.dtype == torch.uint8:
            images = normalize_images(images)
        return self.network(images)

    @torch.no_grad()
    def embed(self, images: Sequence[Image.Image]) -> Tensor:
        """Features of a list of PIL images, ``(N, feature_dim)`` on the model's device."""
        batch = torch.stack([self.preprocess_uint8(image) for image in images]).to(self.device)
        return self(batch)
