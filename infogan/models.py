"""InfoGAN's networks: generator G, discriminator D and recognition network Q.

Chen et al., *InfoGAN*, NeurIPS 2016, Appendix C, Table 1 (MNIST):

* D: conv4x4 64 lReLU s2 -> conv4x4 128 lReLU s2 BN -> FC 1024 lReLU BN -> FC 1.
* Q: D's layers up to the FC 1024, then FC 128 BN lReLU -> the codes' parameters.
* G: FC 1024 ReLU BN -> FC 7x7x128 ReLU BN -> upconv4x4 64 ReLU s2 BN
  -> upconv4x4 1 channel s2 (tanh, to match images normalised to [-1, 1]).

Every stride-2 layer halves (or doubles) the side, so the same networks serve
28x28 grey (MNIST, Fashion-MNIST: a 7x7 base) and 32x32 colour images (8x8).
Q shares D's trunk (the paper) or, with ``separate_q``, has its own copy of it.

O-GAN (Su, arXiv 1903.01931) reuses G and D's trunk: :class:`OGANEncoder` is
D with a head of ``noise_dim`` outputs E(x), whose mean is the real/fake score,
and :class:`OGAN` holds it with G (no Q).

:func:`build_model` builds the one or the other from a run's settings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from infogan.codes import Latent, LatentSpec, QParams
from infogan.config import OGAN_OBJECTIVE, TrainConfig

FEATURE_DIM = 1024  # width of the trunk's FC layer: the features shared by D and Q
LEAKY_SLOPE = 0.1


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al., 2016): N(0, 0.02) weights, BN scales N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _check_image_shape(channels: int, image_size: int) -> int:
    """The side of the 128-channel base feature map; raises for unsupported shapes."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if image_size < 8 or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 and >= 8 (e.g. 28 or 32), got {image_size}")
    return image_size // 4


class Generator(nn.Module):
    """G(z, c): ``(B, input_dim)`` latents -> ``(B, channels, image_size, image_size)`` images in [-1, 1]."""

    def __init__(self, input_dim: int, channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        base = _check_image_shape(channels, image_size)
        self.net = nn.Sequential(
            nn.Linear(input_dim, 1024, bias=False),
            nn.BatchNorm1d(1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 128 * base * base, bias=False),
            nn.BatchNorm1d(128 * base * base),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (128, base, base)),  # (B, 128, S/4, S/4)
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1, bias=False),  # (B, 64, S/2, S/2)
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, channels, 4, stride=2, padding=1),  # (B, C, S, S)
            nn.Tanh(),
        )

    def forward(self, latent: Tensor) -> Tensor:
        return self.net(latent)


def batch_norm(layer: nn.BatchNorm1d | nn.BatchNorm2d, x: Tensor, groups: int = 1) -> Tensor:
    """``layer(x)``, but in training with each of ``groups`` equal slices of the batch normalised on its own.

    Running a concatenated batch ``[a; b]`` through a network with ``groups=2``
    gives the outputs, gradients and running statistics of two separate calls
    on ``a`` and ``b`` (in that order), while the convolutions and matrix
    products see one bigger batch, which is faster. D uses it for its real and
    fake halves: the paper's code normalises each with its own batch statistics.

    Shapes:
        x: ``(groups * B, C)`` or ``(groups * B, C, H, W)``.
    """
    if groups == 1 or not layer.training:
        return layer(x)
    if x.shape[0] % groups:
        raise ValueError(f"a batch of {x.shape[0]} does not split into {groups} equal groups")
    grouped = x.view(groups, x.shape[0] // groups, *x.shape[1:])  # (G, B, C[, H, W])
    dims = (1, *range(3, grouped.dim()))  # all but the group and the channel
    var, mean = torch.var_mean(grouped, dim=dims, keepdim=True, unbiased=False)  # (G, 1, C[, 1, 1])
    normalised = ((grouped - mean) * torch.rsqrt(var + layer.eps)).view_as(x)
    with torch.no_grad():
        count = grouped[0].numel() // x.shape[1]  # values per channel in one group
        for g in range(groups):  # the same sequence of updates as separate calls
            # New tensors, not lerp_: a plain BatchNorm call earlier in the step saved these for its backward.
            layer.running_mean = layer.running_mean.lerp(mean[g].flatten(), layer.momentum)
            layer.running_var = layer.running_var.lerp(var[g].flatten() * count / max(count - 1, 1), layer.momentum)
        layer.num_batches_tracked.add_(groups)
    affine = (1, -1) + (1,) * (x.dim() - 2)
    return normalised * layer.weight.view(affine) + layer.bias.view(affine)


class Trunk(nn.Module):
    """D's shared layers: ``(B, channels, S, S)`` images -> ``(B, 1024)`` features (FC 1024 lReLU BN)."""

    def __init__(self, channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        base = _check_image_shape(channels, image_size)
        self.conv1 = nn.Conv2d(channels, 64, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 4, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(128)
        self.fc = nn.Linear(128 * base * base, FEATURE_DIM, bias=False)
        self.bn_fc = nn.BatchNorm1d(FEATURE_DIM)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, images: Tensor, groups: int = 1) -> Tensor:
        """Features of ``(B, C, S, S)`` images; ``groups`` splits BatchNorm's statistics (see :func:`batch_norm`)."""
        x = self.act(self.conv1(images))  # (B, 64, S/2, S/2)
        x = self.act(batch_norm(self.bn2, self.conv2(x), groups))  # (B, 128, S/4, S/4)
        return self.act(batch_norm(self.bn_fc, self.fc(x.flatten(1)), groups))  # (B, 1024)


@torch.no_grad()
def generate(generator: Generator, spec: LatentSpec, latent: Latent) -> Tensor:
    """``generator``'s ``(B, C, S, S)`` images in [-1, 1] for ``latent``, with its BatchNorm in eval mode."""
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    images = generator(spec.generator_input(Latent(*(t.to(device) for t in latent))))
    generator.train(was_training)
    return images


class QHead(nn.Module):
    """Q's own layers: ``(B, 1024)`` trunk features -> ``(B, out_dim)`` code parameters (FC 128 BN lReLU -> FC)."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(FEATURE_DIM, 128, bias=False),
            nn.BatchNorm1d(128),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Linear(128, out_dim),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class InfoGAN(nn.Module):
    """G, D and Q together, with the parameter groups that the two optimisers take.

    Args:
        spec: the latent space (sizes of z and of the codes).
        channels: 1 (grey) or 3 (RGB).
        image_size: side of the square images, a multiple of 4 (28 or 32 in the paper's setting).
        separate_q: give Q its own trunk instead of sharing D's.
        learn_sigma: Q also predicts a log sigma per continuous code (else sigma = 1).
    """

    def __init__(
        self,
        spec: LatentSpec,
        channels: int = 1,
        image_size: int = 28,
        separate_q: bool = False,
        learn_sigma: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.channels = channels
        self.image_size = image_size
        self.separate_q = separate_q
        self.learn_sigma = learn_sigma
        self.generator = Generator(spec.input_dim, channels, image_size)
        self.trunk = Trunk(channels, image_size)
        self.d_head = nn.Linear(FEATURE_DIM, 1)
        self.q_trunk = Trunk(channels, image_size) if separate_q else None
        self.q_head = QHead(spec.q_output_dim(learn_sigma))
        self.apply(init_weights)

    def generate(self, latent: Latent) -> Tensor:
        """G's ``(B, C, S, S)`` images in [-1, 1] for ``latent``, with G's BatchNorm in eval mode."""
        return generate(self.generator, self.spec, latent)

    def discriminate(self, images: Tensor, groups: int = 1) -> tuple[Tensor, Tensor]:
        """``(B, C, S, S)`` images -> (real/fake logits ``(B,)``, trunk features ``(B, 1024)``).

        ``groups=2`` scores a concatenated ``[real; fake]`` batch as two separate
        batches would be scored (BatchNorm statistics per half), in one pass.
        """
        features = self.trunk(images, groups)  # (B, 1024)
        return self.d_head(features).squeeze(1), features

    def recognize(self, images: Tensor, features: Tensor | None = None) -> QParams:
        """Q(c | x): the codes' parameters for ``(B, C, S, S)`` images.

        With a shared trunk, pass D's ``features`` of the same images to skip
        recomputing them; a separate Q trunk always reads the images.
        """
        if self.q_trunk is not None:
            features = self.q_trunk(images)
        elif features is None:
            features = self.trunk(images)
        return self.spec.split_q_output(self.q_head(features), self.learn_sigma)

    def d_parameters(self) -> list[nn.Parameter]:
        """Trained by D's optimiser: the trunk (shared with Q unless ``separate_q``) and D's head."""
        return [*self.trunk.parameters(), *self.d_head.parameters()]

    def g_parameters(self) -> list[nn.Parameter]:
        """Trained by G's optimiser: G, Q's head and (with ``separate_q``) Q's trunk."""
        q_trunk = [] if self.q_trunk is None else list(self.q_trunk.parameters())
        return [*self.generator.parameters(), *q_trunk, *self.q_head.parameters()]


class OGANEncoder(nn.Module):
    """O-GAN's discriminator E, also its encoder: InfoGAN's D with a head of ``code_dim`` outputs instead of one.

    ``(B, C, S, S)`` images -> ``E(x)``, ``(B, code_dim)``: D's trunk (FC 1024
    lReLU BN) followed by FC ``code_dim``. Its mean over the dimensions is the
    real/fake score (:meth:`OGAN.discriminate`), and the vector itself is the
    image's encoding.
    """

    def __init__(self, code_dim: int, channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.trunk = Trunk(channels, image_size)
        self.head = nn.Linear(FEATURE_DIM, code_dim)

    def forward(self, images: Tensor, groups: int = 1) -> Tensor:
        """``E(x)`` of ``(B, C, S, S)`` images, ``(B, code_dim)``; ``groups`` as in :func:`batch_norm`."""
        return self.head(self.trunk(images, groups))


class OGAN(nn.Module):
    """O-GAN's networks: InfoGAN's G on the noise alone, and a D that is also an encoder (no Q).

    Su, *O-GAN: Extremely Concise Approach for Auto-Encoding Generative
    Adversarial Networks*, arXiv 1903.01931: D outputs a vector ``E(x)`` of the
    noise's size; ``avg(E(x))``, its mean over the dimensions, is the real/fake
    logit, and G(standardise(E(x))) reconstructs x once training has made
    ``E(G(z))`` correlate with ``z`` (:func:`infogan.objective.pearson_correlation`).

    Args:
        spec: the latent space: noise only (``categorical=()``, ``continuous=0``,
            ``needs_code=False``); E(x) has ``spec.noise_dim`` values.
        channels: 1 (grey) or 3 (RGB).
        image_size: side of the square images, a multiple of 4.
    """

    def __init__(self, spec: LatentSpec, channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        if spec.categorical or spec.continuous:
            raise ValueError(f"O-GAN's generator reads the noise alone: the latent space must have no codes, "
                             f"got categorical={spec.categorical}, continuous={spec.continuous}")
        self.spec = spec
        self.channels = channels
        self.image_size = image_size
        self.generator = Generator(spec.input_dim, channels, image_size)
        self.encoder = OGANEncoder(spec.noise_dim, channels, image_size)
        self.apply(init_weights)

    def generate(self, latent: Latent) -> Tensor:
        """G's ``(B, C, S, S)`` images in [-1, 1] for ``latent`` (the noise alone), with G's BatchNorm in eval mode."""
        return generate(self.generator, self.spec, latent)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """``E(x)``, ``(B, noise_dim)``, of ``(B, C, S, S)`` images in [-1, 1], with E's BatchNorm in eval mode."""
        was_training = self.encoder.training
        self.encoder.eval()
        codes = self.encoder(images.to(next(self.encoder.parameters()).device))
        self.encoder.train(was_training)
        return codes

    def discriminate(self, images: Tensor, groups: int = 1) -> tuple[Tensor, Tensor]:
        """``(B, C, S, S)`` images -> (real/fake logits ``avg(E(x))``, ``(B,)``; the encodings ``E(x)``, ``(B, noise_dim)``).

        ``groups`` scores a concatenated batch with BatchNorm statistics per part, as InfoGAN's D does.
        """
        codes = self.encoder(images, groups)  # (B, noise_dim)
        return codes.mean(dim=1), codes

    def d_parameters(self) -> list[nn.Parameter]:
        """Trained by D's optimiser: the encoder (trunk and head)."""
        return list(self.encoder.parameters())

    def g_parameters(self) -> list[nn.Parameter]:
        """Trained by G's optimiser: G."""
        return list(self.generator.parameters())


def build_model(config: TrainConfig, channels: int, image_size: int) -> InfoGAN | OGAN:
    """The networks a resolved ``config`` describes, for ``(channels, image_size, image_size)`` images, on the CPU.

    This is the whole model a checkpoint's ``modules["model"]`` holds:
    :class:`InfoGAN` (G, D and Q) for ``objective="infogan"``, :class:`OGAN`
    (G and the encoder E) for ``objective="ogan"``.
    """
    spec = config.latent_spec()
    if config.objective == OGAN_OBJECTIVE:
        return OGAN(spec, channels, image_size)
    return InfoGAN(spec, channels, image_size, config.separate_q, config.learn_sigma)
