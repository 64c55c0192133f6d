"""The methods DIM is measured against on the same encoder and budget: supervised training and lightly's SimCLR.

Both train the DIM encoder (:class:`dim.models.Encoder`, the architecture and
code size of the run's :class:`dim.config.TrainConfig`) for a wall-clock budget
of training steps, on the training split held in memory as uint8, shuffled by
:func:`dim.train.epoch_order` as ``dim train`` shuffles it, with the learning
rate on a cosine from its peak to zero over the budget,
``lr * (1 + cos(pi * p)) / 2`` at the used-up fraction ``p`` of the budget (the
larger of time and epochs), as ``dim train``'s ``cosine`` schedule. Each step
runs under the run's :func:`dim.core.device.autocast` (``precision``).

* :func:`train_supervised`: the encoder *with* labels, cross-entropy on a linear
  classifier over its ``fc`` features, the run's augmentation
  (:func:`dim.augment.augment`), Adam at the run's learning rate and batch
  size: the ceiling of this network at this budget. Its code head gets no
  gradient, so only ``fc`` is a trained feature.
* :func:`train_simclr`: SimCLR (Chen et al., *A Simple Framework for
  Contrastive Learning of Visual Representations*, ICML 2020) with lightly's
  parts and the settings of lightly's CIFAR-10 benchmark: two views per image
  from ``SimCLRTransform(input_size=32, gaussian_blur=0.0)`` (random resized
  crop of 8-100 % of the area, flip, colour jitter with probability 0.8, grey
  with 0.2; here normalised to [-1, 1] as every DIM input is), a
  ``SimCLRProjectionHead`` g (Linear, BatchNorm, ReLU, Linear to 128) on the
  encoder's code z, ``NTXentLoss`` (temperature 0.5) between the two views'
  ``g(z)``, and SGD with momentum 0.9, weight decay 5e-4 and a peak rate of
  ``0.06 * batch_size / 128``. The encoder is deterministic (z is its code
  mean), so ``z`` and ``fc`` are both features before the projection head, the
  representation SimCLR evaluates. The transform runs per image in the training
  process and counts in the step time.

Needs lightly for SimCLR: ``pip install 'dim-toolkit[benchmark]'``.
``benchmarks/dim_cifar10.py`` trains and judges them next to DIM (its docstring has the details):

    # the 10-minute screen of every arm (these two among them), one thread each, two at a time
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 10 --threads 1 --parallel 2
    # the 30-minute confirmation of DIM's default with 2 threads
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 30 --threads 2 --arms dim
    # the peers alone, side by side
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 10 --threads 1 --parallel 2 --arms supervised,simclr
    # where DIM's training step spends its time (the profile)
    python benchmarks/profile_step.py --threads 1 --batch-size 128 256 512
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import to_pil_image

from dim.augment import augment
from dim.config import TrainConfig
from dim.core.device import adam, autocast, seed_everything
from dim.core.images import normalize_images
from dim.core.memory import ImageDataset
from dim.core.probes import extract_features
from dim.models import Encoder, FeatureHead
from dim.train import epoch_order

try:
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
except ImportError:  # only the simclr arm needs lightly (the benchmark extra)
    NTXentLoss = SimCLRProjectionHead = SimCLRTransform = None

# lightly's CIFAR-10 benchmark: SGD at 0.06 per 128 images of batch, momentum 0.9, weight decay 5e-4; a projection
# head of 512 hidden units to 128; no Gaussian blur in the transform.
SIMCLR_LR_PER_128 = 0.06
SIMCLR_MOMENTUM = 0.9
SIMCLR_WEIGHT_DECAY = 5e-4
SIMCLR_HIDDEN = 512
SIMCLR_OUT = 128


@dataclass
class Budget:
    """How long a peer trains: ``minutes`` of training steps or ``epochs`` passes, whichever ends first."""

    minutes: float
    epochs: int


@dataclass
class PeerRun:
    """A trained peer.

    Attributes:
        encoder: the trained encoder (train mode as left by training).
        features: the encoder's features that training shaped (of :data:`dim.models.FEATURES`).
        steps: optimiser steps taken.
        seconds: time spent in training steps (indexing, augmentation, forward, backward, update).
        epochs: passes over the training split, ``steps * batch_size / N``.
        extra: figures of this peer only (``test_top1`` of the supervised classifier).
    """

    encoder: Encoder
    features: tuple[str, ...]
    steps: int
    seconds: float
    epochs: float
    extra: dict[str, Any] = field(default_factory=dict)


def require_lightly() -> None:
    """Raise ``SystemExit`` with the install command when lightly is missing (before any arm trains)."""
    if NTXentLoss is None:
        raise SystemExit("the simclr arm needs lightly: pip install 'dim-toolkit[benchmark]'")


def train_for_budget(
    step: Callable[[Tensor], None],
    size: int,
    batch_size: int,
    budget: Budget,
    optimizer: torch.optim.Optimizer,
    seed: int,
    device: torch.device,
) -> tuple[int, float]:
    """Call ``step(indices)`` on shuffled batches until the budget is spent; returns (steps, seconds of steps).

    ``indices`` is a ``(batch_size,)`` slice of :func:`dim.train.epoch_order` on ``device``; an epoch is
    ``size // batch_size`` steps (the last partial batch is dropped). Before each step every parameter group's
    rate is set to ``peak * (1 + cos(pi * p)) / 2``, ``p`` the larger of the used-up fractions of the time and
    of the epochs, so it reaches zero when the budget runs out.

    Raises:
        ValueError: if ``size`` is smaller than one batch.
    """
    steps_per_epoch = size // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{size} training images are fewer than one batch of {batch_size}: lower the batch size")
    peaks = [group["lr"] for group in optimizer.param_groups]
    total_steps, limit = budget.epochs * steps_per_epoch, 60 * budget.minutes
    steps, seconds = 0, 0.0
    while steps < total_steps and seconds < limit:
        epoch, batch = divmod(steps, steps_per_epoch)
        if batch == 0:
            order = epoch_order(size, seed, epoch).to(device)  # (size,)
        used = max(steps / total_steps, seconds / limit)
        for group, peak in zip(optimizer.param_groups, peaks, strict=True):
            group["lr"] = peak * 0.5 * (1.0 + math.cos(math.pi * used))
        start = time.perf_counter()
        step(order[batch * batch_size : (batch + 1) * batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the step's time, not its launch's
        seconds += time.perf_counter() - start
        steps += 1
    return steps, seconds


def dim_encoder(config: TrainConfig, train: ImageDataset, stochastic: bool) -> Encoder:
    """The encoder of a DIM run of ``config`` on ``train``'s images (channels-last, on the CPU)."""
    encoder = Encoder(config.arch, train.channels, train.image_size, config.z_dim, stochastic=stochastic)
    return encoder.to(memory_format=torch.channels_last)


def train_supervised(
    config: TrainConfig, train: ImageDataset, test: ImageDataset, budget: Budget, device: torch.device
) -> PeerRun:
    """The DIM encoder trained with labels: cross-entropy on a linear classifier over ``fc`` (see the module doc).

    Args:
        config: a resolved DIM configuration (architecture, code size, batch size, learning rate,
            augmentation, precision, seed).
        train: the labelled training split, uint8 ``(N, C, H, W)`` in memory.
        test: the labelled test split, for the classifier's ``test_top1``.
        budget: the training budget.
        device: where to train.
    """
    seed_everything(config.seed)
    encoder = dim_encoder(config, train, stochastic=config.prior == "kl").to(device)
    classifier = nn.Linear(encoder.fc_dim, train.num_classes).to(device)
    optimizer = adam([*encoder.parameters(), *classifier.parameters()], device, lr=config.lr)
    images, labels = train.images.to(device), train.labels.to(device)  # (N, C, H, W) uint8, (N,)
    precision = autocast(device, config.precision)

    def step(indices: Tensor) -> None:
        views = augment(normalize_images(images[indices]), config.augment)  # (B, C, H, W) in [-1, 1]
        with precision:
            logits = classifier(encoder.features(views.contiguous(memory_format=torch.channels_last), "fc"))
            loss = F.cross_entropy(logits.float(), labels[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    encoder.train()
    steps, seconds = train_for_budget(step, len(images), config.batch_size, budget, optimizer, config.seed, device)
    classify = nn.Sequential(FeatureHead(encoder, "fc", config.precision), classifier).eval()
    predictions = extract_features(classify, test.images).argmax(dim=1)  # (Q,)
    test_top1 = (predictions == test.labels).float().mean().item()
    epochs = steps * config.batch_size / len(images)
    return PeerRun(encoder, ("fc",), steps, seconds, epochs, {"test_top1": test_top1})


def train_simclr(config: TrainConfig, train: ImageDataset, budget: Budget, device: torch.device) -> PeerRun:
    """The DIM encoder trained by lightly's SimCLR (see the module doc); labels are not used.

    Args:
        config: a resolved DIM configuration (architecture, code size, batch size, precision, seed;
            SimCLR's own optimiser, rate, augmentation and loss replace DIM's).
        train: the training split, uint8 ``(N, C, H, W)`` in memory.
        budget: the training budget.
        device: where to train.
    """
    require_lightly()
    seed_everything(config.seed)
    encoder = dim_encoder(config, train, stochastic=False).to(device)
    head = SimCLRProjectionHead(config.z_dim, SIMCLR_HIDDEN, SIMCLR_OUT).to(device)
    criterion = NTXentLoss()
    optimizer = torch.optim.SGD([*encoder.parameters(), *head.parameters()],
                                lr=SIMCLR_LR_PER_128 * config.batch_size / 128, momentum=SIMCLR_MOMENTUM,
                                weight_decay=SIMCLR_WEIGHT_DECAY)
    half = [0.5] * train.channels  # Normalize(0.5, 0.5) takes ToTensor's [0, 1] to [-1, 1]
    transform = SimCLRTransform(input_size=train.image_size, gaussian_blur=0.0, normalize={"mean": half, "std": half})
    precision = autocast(device, config.precision)

    def project(views: Tensor) -> Tensor:
        with precision:
            return head(encoder(views.to(device).contiguous(memory_format=torch.channels_last)).z).float()  # (B, 128)

    def step(indices: Tensor) -> None:
        pairs = [transform(to_pil_image(image)) for image in train.images[indices.cpu()]]  # B x [(C, H, W)] * 2
        first, second = (torch.stack([pair[view] for pair in pairs]) for view in (0, 1))  # (B, C, H, W) each
        loss = criterion(project(first), project(second))  # one forward per view, as lightly's benchmark
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    encoder.train()
    head.train()
    steps, seconds = train_for_budget(step, len(train.images), config.batch_size, budget, optimizer, config.seed,
                                      device)
    return PeerRun(encoder, ("z", "fc"), steps, seconds, steps * config.batch_size / len(train.images))
