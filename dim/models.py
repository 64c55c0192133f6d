"""Deep InfoMax encoders: the DIM paper's DCGAN-style convnet and a ResNet-18 for small images.

Every encoder maps ``(B, C, H, W)`` images in [-1, 1] to an :class:`Encoding`
that exposes the three feature levels DIM works with (Hjelm et al., *Learning
deep representations by mutual information estimation and maximization*,
ICLR 2019, Sec. 3 and App. A.2):

* ``local``: the intermediate feature map C(x) whose positions the local MI
  term scores against the code (Hjelm et al., Sec. 3.2; see docs/dim.md);
* ``conv``: the last convolutional map, the high-level features the global MI
  term scores against the code;
* ``fc``: the fully connected features before the code;
* ``mean`` / ``log_var`` / ``z``: the code. With the closed-form KL prior the
  encoder is Gaussian (``z = mean + sigma * eps`` while training, ``z = mean``
  in eval mode); otherwise it is deterministic and ``log_var`` is ``None``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from dim.core.device import autocast
from dim.mi import reparameterize

ARCHS = ("dcgan", "resnet18")
FEATURES = ("z", "fc", "conv")


class Encoding(NamedTuple):
    """What an encoder computes for a batch (shapes for a 32x32 input and the DCGAN encoder).

    Attributes:
        local: ``(B, 128, 8, 8)`` local feature map C(x).
        conv: ``(B, 256, 4, 4)`` last convolutional map.
        fc: ``(B, 1024)`` fully connected features.
        mean: ``(B, z_dim)`` code mean (the code itself for a deterministic encoder).
        log_var: ``(B, z_dim)`` code log-variance, or ``None`` for a deterministic encoder.
        z: ``(B, z_dim)`` the code used by the objective (sampled while training).
    """

    local: Tensor
    conv: Tensor
    fc: Tensor
    mean: Tensor
    log_var: Tensor | None
    z: Tensor


def _conv_block(in_channels: int, out_channels: int, batch_norm: bool = True) -> nn.Sequential:
    """4x4 convolution with stride 2 (halves H and W), optional BatchNorm, ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with BatchNorm and an identity (or 1x1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _resnet_stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_BasicBlock(in_channels, out_channels, stride), _BasicBlock(out_channels, out_channels, 1))


class Encoder(nn.Module):
    """A DIM encoder: ``local`` trunk, ``top`` trunk, fc layer and code head.

    Args:
        arch: ``"dcgan"`` (the DIM paper's CIFAR-10 encoder: conv 64 -> conv 128
            -> conv 256, 4x4 stride 2, BatchNorm, ReLU; fc 1024; the local map
            is the 128-channel output of the second conv, 8x8 for 32x32 input)
            or ``"resnet18"`` (ResNet-18 adapted to small images: a 3x3 stem
            without max-pooling; the local map is the 256-channel output of the
            third stage, 8x8 for 32x32 input; fc = the pooled 512 features).
        channels: input channels (1 or 3).
        image_size: side of the square input (at least 16; 28 and 32 are typical).
        z_dim: size of the code.
        stochastic: Gaussian code (mean and log-variance heads, for the KL
            prior) instead of a deterministic one.
    """

    def __init__(
        self,
        arch: str = "dcgan",
        channels: int = 3,
        image_size: int = 32,
        z_dim: int = 64,
        stochastic: bool = True,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown encoder architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
        if z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {z_dim}")
        self.arch = arch
        self.channels = channels
        self.image_size = image_size
        self.z_dim = z_dim
        self.stochastic = stochastic
        if arch == "dcgan":
            # The first layer has no BatchNorm, as in DCGAN's discriminator.
            self.local = nn.Sequential(_conv_block(channels, 64, batch_norm=False), _conv_block(64, 128))
            self.top = _conv_block(128, 256)
            fc_dim = 1024
        else:
            stem = nn.Sequential(
                nn.Conv2d(channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
            )
            self.local = nn.Sequential(stem, _resnet_stage(64, 64, 1), _resnet_stage(64, 128, 2), _resnet_stage(128, 256, 2))
            self.top = _resnet_stage(256, 512, 2)
            fc_dim = 512
        with torch.no_grad():
            probe = torch.zeros(1, channels, image_size, image_size)
            local = self.local.eval()(probe)
            conv = self.top.eval()(local)
        self.train()
        self.local_shape: tuple[int, int, int] = tuple(local.shape[1:])  # (C_l, h, w)
        self.conv_shape: tuple[int, int, int] = tuple(conv.shape[1:])  # (C_c, h', w')
        flat_dim = conv[0].numel()
        if arch == "dcgan":
            self.fc: nn.Module = nn.Sequential(
                nn.Flatten(), nn.Linear(flat_dim, fc_dim, bias=False), nn.BatchNorm1d(fc_dim), nn.ReLU(inplace=True)
            )
        else:
            self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # global average pooling
        self.fc_dim = fc_dim
        self.conv_dim = flat_dim
        self.head = nn.Linear(fc_dim, 2 * z_dim if stochastic else z_dim)

    def feature_dim(self, feature: str) -> int:
        """Size of the vectors :meth:`features` returns for ``feature`` (``z``, ``fc`` or ``conv``)."""
        return {"z": self.z_dim, "fc": self.fc_dim, "conv": self.conv_dim}[check_feature(feature)]

    def forward(self, images: Tensor) -> Encoding:
        local = self.local(images)  # (B, C_l, h, w)
        conv = self.top(local)  # (B, C_c, h', w')
        fc = self.fc(conv)  # (B, F)
        code = self.head(fc)  # (B, Z) or (B, 2Z)
        if self.stochastic:
            mean, log_var = code.float().chunk(2, dim=1)
            z = reparameterize(mean, log_var) if self.training else mean
        else:
            mean, log_var = code.float(), None
            z = mean
        return Encoding(local=local, conv=conv, fc=fc, mean=mean, log_var=log_var, z=z)

    def features(self, images: Tensor, feature: str = "z") -> Tensor:
        """``(B, C, H, W)`` images -> ``(B, feature_dim)`` float32 vectors, computing only what is needed.

        ``z`` is the code mean (no sampling noise), ``fc`` the fully connected
        features and ``conv`` the flattened last convolutional map.
        """
        check_feature(feature)
        conv = self.top(self.local(images))
        if feature == "conv":
            return conv.flatten(1).float()
        fc = self.fc(conv)
        if feature == "fc":
            return fc.float()
        return self.head(fc)[:, : self.z_dim].float()

    def config(self) -> dict:
        """The constructor arguments, as stored in checkpoints."""
        return {
            "arch": self.arch,
            "channels": self.channels,
            "image_size": self.image_size,
            "z_dim": self.z_dim,
            "stochastic": self.stochastic,
        }


def check_feature(feature: str) -> str:
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; choose one of {', '.join(FEATURES)}")
    return feature


class FeatureHead(nn.Module):
    """``Encoder.features`` as a module, the network a :class:`dim.core.features.FeatureExtractor` wraps.

    The forward pass runs under :func:`dim.core.device.autocast` with
    ``precision`` as inference (``auto``: bf16 on CUDA and on CPUs with fast
    bf16, else fp32); the output is float32.
    """

    def __init__(self, encoder: Encoder, feature: str = "z", precision: str = "auto") -> None:
        super().__init__()
        self.encoder = encoder
        self.feature = check_feature(feature)
        self.precision = precision

    def forward(self, images: Tensor) -> Tensor:
        images = images.contiguous(memory_format=torch.channels_last)  # (B, C, H, W)
        with autocast(images.device, self.precision, training=False):
            return self.encoder.features(images, self.feature)  # (B, feature_dim)
