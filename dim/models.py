"""Deep InfoMax encoders: the DIM paper's DCGAN-style convnet and a ResNet-18, both scaled to the input size.

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

import itertools
import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from dim.core.device import autocast
from dim.core.features import FeatureExtractor
from dim.mi import reparameterize
from dim.objective import build_objective

if TYPE_CHECKING:
    from dim.config import TrainConfig
    from dim.objective import DeepInfoMax, Gather

ARCHS = ("dcgan", "resnet18")
FEATURES = ("z", "fc", "conv")


class Encoding(NamedTuple):
    """What an encoder computes for a batch (shapes for a 32x32 input and the DCGAN encoder).

    The map sizes scale with the input so that ``local`` stays about 8x8; the
    shapes per size and architecture are in :class:`Encoder`'s table (e.g. the
    DCGAN encoder on 96x96 inputs: ``local`` ``(B, 128, 6, 6)``, ``conv`` ``(B, 256, 3, 3)``).

    Attributes:
        local: ``(B, 128, 8, 8)`` local feature map C(x) (``(B, 256, 8, 8)`` for ResNet-18).
        conv: ``(B, 256, 4, 4)`` last convolutional map (``(B, 512, 4, 4)`` for ResNet-18).
        fc: ``(B, 1024)`` fully connected features (``(B, 512)`` for ResNet-18).
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


def downsampling_stages(image_size: int) -> int:
    """How many stride-2 downsamplings an encoder adds to its 32-px layout for ``image_size`` inputs.

    The rule: the ``n >= 0`` that brings ``image_size / 2**n`` closest to 32 on
    a log scale, ``max(0, round(log2(image_size / 32)))``, so that the rest of
    the network sees about 32 px and the local map stays about 8x8: sizes up to
    45 -> 0 (28, 32), 46-90 -> 1 (64), 91-181 -> 2 (96, 128), 182-362 -> 3
    (256), and so on. (No integer size is a tie: the boundaries are 32 * 2**(k + 1/2).)

    Raises:
        ValueError: if ``image_size`` is not positive.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return max(0, round(math.log2(image_size / 32)))


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


def _resnet_stem(channels: int, stages: int) -> nn.Sequential:
    """The ResNet stem for ``stages`` extra downsamplings (:func:`downsampling_stages`), 64 channels out.

    0: 3x3 convolution with stride 1 (the small-image stem); 1: 7x7 convolution
    with stride 2; 2: the ImageNet stem, the 7x7 stride-2 convolution and a 3x3
    stride-2 max-pool; each further stage adds another 3x3 stride-2 max-pool.
    """
    if stages == 0:
        conv = nn.Conv2d(channels, 64, 3, padding=1, bias=False)
    else:
        conv = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    pools = [nn.MaxPool2d(3, stride=2, padding=1) for _ in range(stages - 1)]
    return nn.Sequential(conv, nn.BatchNorm2d(64), nn.ReLU(inplace=True), *pools)


class Encoder(nn.Module):
    """A DIM encoder: ``local`` trunk, ``top`` trunk, fc layer and code head.

    Both architectures are the 32-px layouts below with ``n =
    downsampling_stages(image_size)`` stride-2 downsamplings added at the start
    of ``local`` (``n = 0`` up to 45 px, so 28 and 32 px keep the 32-px layout
    and its parameter names), so that the rest of the network sees about 32 px
    and the local map stays about 8x8:

    * ``dcgan``, the DIM paper's CIFAR-10 encoder: conv 64 -> conv 128 -> conv
      256, 4x4 stride 2, BatchNorm, ReLU; fc 1024; the local map is the output
      of conv 128. The ``n`` extra stages are the same blocks, 32 channels
      each, in front of conv 64 (the network's first layer has no BatchNorm, as
      in DCGAN's discriminator). The conv map stays about 4x4, so the fc layer
      keeps its 32-px size (4096 -> 1024 at 32, 64 and 128 px; 2304 -> 1024 at
      28 and 96 px): 4.99 M parameters at 32 px, 5.02 M at 64, 3.20 M at 96,
      5.03 M at 128 (RGB, z_dim 64).
    * ``resnet18``: ResNet-18, four stages of two basic blocks (64, 128, 256
      and 512 channels); the local map is the output of the third stage, fc
      the pooled 512 features. The stem does the ``n`` downsamplings: 0: a 3x3
      stride-1 convolution without max-pooling (small images); 1: a 7x7
      stride-2 convolution without max-pooling; 2: the ImageNet stem, that
      convolution and a 3x3 stride-2 max-pool; each further ``n`` adds another
      3x3 stride-2 max-pool. 11.23 M parameters at 32 px, 11.24 M from 46 px on.

    Shapes ``(C, H, W)`` of the two maps:

    ====  ===  ===========  ===========  ==============  =============
    size   n   dcgan local  dcgan conv   resnet18 local  resnet18 conv
    ====  ===  ===========  ===========  ==============  =============
      28   0   128, 7, 7    256, 3, 3    256, 7, 7       512, 4, 4
      32   0   128, 8, 8    256, 4, 4    256, 8, 8       512, 4, 4
      64   1   128, 8, 8    256, 4, 4    256, 8, 8       512, 4, 4
      96   2   128, 6, 6    256, 3, 3    256, 6, 6       512, 3, 3
     128   2   128, 8, 8    256, 4, 4    256, 8, 8       512, 4, 4
     256   3   128, 8, 8    256, 4, 4    256, 8, 8       512, 4, 4
    ====  ===  ===========  ===========  ==============  =============

    Other sizes work too: from 20 px on, the local map is between 5x5 and
    12x12 (48 px: 6x6 for both; 80 px: 10x10 for both).

    Args:
        arch: ``"dcgan"`` or ``"resnet18"`` (see above).
        channels: input channels (1 or 3).
        image_size: side of the square input (at least 16; 28, 32, 64, 96 and
            128 are typical).
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
        stages = downsampling_stages(image_size)
        if arch == "dcgan":
            widths = [channels] + [32] * stages + [64, 128]
            # The first layer has no BatchNorm, as in DCGAN's discriminator.
            blocks = [_conv_block(w_in, w_out, i > 0) for i, (w_in, w_out) in enumerate(itertools.pairwise(widths))]
            self.local = nn.Sequential(*blocks)
            self.top = _conv_block(128, 256)
            fc_dim = 1024
        else:
            self.local = nn.Sequential(
                _resnet_stem(channels, stages),
                _resnet_stage(64, 64, 1),
                _resnet_stage(64, 128, 2),
                _resnet_stage(128, 256, 2),
            )
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
        with autocast(images.device, self.precision):
            return self.encoder.features(images, self.feature)  # (B, feature_dim)


def feature_extractor(
    encoder: Encoder, feature: str = "z", precision: str = "auto", source: str | None = None
) -> FeatureExtractor:
    """The encoder's ``feature`` as a :class:`dim.core.features.FeatureExtractor` in eval mode (channels-last).

    Args:
        encoder: a trained (or training) encoder; it is shared, not copied.
        feature: one of :data:`FEATURES`.
        precision: the number format of inference (see :class:`FeatureHead`).
        source: where the weights came from (a checkpoint path), for the extractor's fingerprint.
    """
    head = FeatureHead(encoder.to(memory_format=torch.channels_last), feature, precision)
    extractor = FeatureExtractor(head, encoder.image_size, encoder.channels, encoder.feature_dim(feature),
                                 name=f"dim:{feature}", source=source)
    return extractor.eval()


def build_model(
    config: TrainConfig, channels: int, image_size: int, gather: Gather | None = None
) -> DeepInfoMax:
    """The whole model a DIM checkpoint holds: the encoder and the MI terms a resolved ``config`` describes.

    Args:
        config: a resolved :class:`dim.config.TrainConfig`.
        channels: 1 or 3, of the training images.
        image_size: side of the training images.
        gather: for DDP, the all-gather of negatives across processes (see :class:`dim.objective.DeepInfoMax`).
    """
    encoder = Encoder(config.arch, channels, image_size, config.z_dim, stochastic=config.prior == "kl")
    return build_objective(encoder, config, gather)
