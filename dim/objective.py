"""The Deep InfoMax objective: alpha * global MI + beta * local MI + gamma * prior.

Hjelm et al., *Learning deep representations by mutual information
estimation and maximization*, ICLR 2019, eq. 8:

    min  -alpha * I_global(x, z)  -  beta * mean_ij I_local(C_ij(x), z)  +  gamma * prior(z).

Each MI term is an :class:`dim.mi.MIEstimator` (critic + negative sampler +
bound) from the shared MI module (``docs/mi.md``), handed to
:class:`DeepInfoMax` as an object:

* global: the flattened last convolutional map against the code z. DIM's
  global discriminator encodes C(x) with a further convolution and flattens
  it; the encoder's last convolution already does exactly that, so its output
  is reused: concatenating x and z and compressing again amounts to sharing
  the encoder (``docs/dim.md``).
* local: every position C_ij of the intermediate map C(x) against z
  (``local_maps="local+conv"``: also every position of the last convolutional map).

:func:`build_objective` maps a configuration's names to those parts, with
the MI module's registries and builders (:func:`dim.mi.make_critic`,
:func:`dim.mi.make_negatives`, :func:`dim.mi.make_bound`). The valid values
of each choice (:data:`BOUNDS`, :data:`NEGATIVES`, :data:`CRITICS`,
:data:`PRIORS`, :data:`LOCAL_MAPS`, :data:`VIEWS`) are defined here, from the
MI module's registries where it has one, and checked together by
:func:`check_objective`, which :meth:`dim.config.TrainConfig.resolved` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dim.mi import BOUNDS as MI_BOUNDS
from dim.mi import CRITICS as MI_CRITICS
from dim.mi import NEGATIVES as MI_NEGATIVES
from dim.mi import (
    BoundOutput,
    MIEstimator,
    gaussian_kl,
    make_bound,
    make_critic,
    make_negatives,
)

if TYPE_CHECKING:  # dim.models builds the model with build_objective, so it is not imported at run time
    from dim.config import TrainConfig
    from dim.models import Encoder, Encoding

# The valid values of DIM's choices: the MI module's registries, plus DIM's own.
BOUNDS: tuple[str, ...] = tuple(MI_BOUNDS)
NEGATIVES: tuple[str, ...] = tuple(MI_NEGATIVES)
CRITICS: tuple[str, ...] = tuple(MI_CRITICS)
PRIORS: tuple[str, ...] = ("kl", "adversarial", "none")
VIEWS: tuple[int, ...] = (1, 2)
# The maps whose positions the local term scores against the code: the intermediate map C(x) alone (DIM), or
# also the last convolutional map's positions (a multi-scale local term, after AMDIM's 1->5 / 1->7 pairs).
LOCAL_MAPS: tuple[str, ...] = ("local", "local+conv")

Gather = Callable[[Tensor], Tensor]


class AdversarialPrior(nn.Module):
    """The DIM paper's prior matching: a discriminator tells N(0, I) samples from codes.

    The encoder minimises the non-saturating GAN loss ``softplus(-D(z))``; the
    discriminator, trained with its own optimiser, minimises
    ``softplus(-D(prior sample)) + softplus(D(z))`` (Hjelm et al., Sec. 3.3).
    Layer sizes follow the paper (1000 -> 200 -> 1).

    Shapes: ``z`` is ``(B, z_dim)``; both losses are scalars.
    """

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.discriminator = nn.Sequential(
            nn.Linear(z_dim, 1000), nn.ReLU(), nn.Linear(1000, 200), nn.ReLU(), nn.Linear(200, 1)
        )

    def encoder_loss(self, z: Tensor) -> Tensor:
        return F.softplus(-self.discriminator(z)).mean()

    def discriminator_loss(self, z: Tensor) -> Tensor:
        real = self.discriminator(torch.randn_like(z))  # (B, 1)
        fake = self.discriminator(z.detach())  # (B, 1)
        return F.softplus(-real).mean() + F.softplus(fake).mean()


class DIMOutput(NamedTuple):
    """One training step's terms (loss tensors keep their graph; MI estimates are detached nats).

    ``global_term`` / ``local_term`` are ``None`` when their weight is zero;
    ``prior`` is the prior term's loss: the KL for ``prior="kl"``, else zero
    (the adversarial prior's encoder loss is computed by the trainer, outside
    DistributedDataParallel, and swapped in with ``output._replace(prior=...)``).
    """

    encoding: Encoding
    global_term: BoundOutput | None
    local_term: BoundOutput | None
    prior: Tensor


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise a ``ValueError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}")


def check_objective(
    bound: str,
    negatives: str,
    critic: str,
    prior: str,
    alpha: float,
    beta: float,
    gamma: float,
    critic_temperature: float = 0.0,
    local_maps: str = "local",
) -> None:
    """Check the settings of the DIM objective, alone and together (``ValueError`` if wrong).

    Every negatives choice works with every bound (see :class:`dim.mi.CrossLocationNegatives`
    for what ``locations`` means to each), except infoNCE with one shuffled negative,
    which is refused: its estimate is capped at log 2.
    """
    for name, value, choices in [
        ("bound", bound, BOUNDS),
        ("negatives", negatives, NEGATIVES),
        ("critic", critic, CRITICS),
        ("prior", prior, PRIORS),
        ("local_maps", local_maps, LOCAL_MAPS),
    ]:
        check_choice(name, value, choices)
    if bound == "infonce" and negatives == "shuffle":
        raise ValueError(
            "infoNCE with one shuffled negative is capped at log 2; use --negatives all or locations with it"
        )
    if critic_temperature < 0 or (critic_temperature > 0 and critic != "separable"):
        raise ValueError(
            f"critic_temperature must be 0 (raw scores) or, with the separable critic, positive; got "
            f"{critic_temperature} with critic {critic!r}"
        )
    if local_maps != "local" and beta == 0:
        raise ValueError(f"local_maps {local_maps!r} adds maps to the local term, which beta=0 turns off; set beta > 0")
    if min(alpha, beta, gamma) < 0 or alpha + beta == 0:
        raise ValueError(f"weights must be >= 0 with alpha + beta > 0, got alpha={alpha}, beta={beta}, gamma={gamma}")


def _mean_bound(terms: list[BoundOutput]) -> BoundOutput | None:
    """The average loss and MI estimate of one term over its view pairings and maps (``None`` for no terms)."""
    if len(terms) <= 1:
        return terms[0] if terms else None
    return BoundOutput(*(torch.stack(values).mean() for values in zip(*terms)))


class DeepInfoMax(nn.Module):
    """Encoder plus the MI terms of the DIM objective, one module for DDP to wrap.

    The terms come in as objects (build them from a configuration with
    :func:`build_objective`); each is any module with
    ``term(x, z) -> BoundOutput``, usually a :class:`dim.mi.MIEstimator`.

    Example:
        >>> from dim.mi import CrossLocationNegatives, InfoNCEBound, MIEstimator, make_critic
        >>> encoder = Encoder(z_dim=64, stochastic=False)
        >>> local_mi = MIEstimator(make_critic("separable", "local", encoder.local_shape[0], 64),
        ...                        CrossLocationNegatives(), InfoNCEBound())
        >>> model = DeepInfoMax(encoder, None, local_mi, prior="none", alpha=0.0, beta=1.0, gamma=0.0)
        >>> loss = model.loss(model(images))  # images (B, 3, 32, 32)

    Args:
        encoder: the :class:`dim.models.Encoder` being trained.
        global_mi: the global term, scoring the flattened last convolutional map
            ``encoding.conv`` ``(B, C_c*h'*w')`` against z ``(B, z_dim)``; ``None``
            exactly when ``alpha`` is 0.
        local_mi: the local term, scoring the positions of ``encoding.local``
            ``(B, C_l, h, w)`` against z; ``None`` exactly when ``beta`` is 0.
        prior: one of :data:`PRIORS`: ``kl`` (closed-form KL of the Gaussian code to
            N(0, I), :func:`dim.mi.gaussian_kl`; needs a stochastic encoder),
            ``adversarial`` (see :class:`AdversarialPrior`, which the trainer holds
            next to this module) or ``none``; the last two need a deterministic encoder.
        alpha: weight of the global MI term.
        beta: weight of the local MI term.
        gamma: weight of the prior term.
        gather: for DDP, a function that all-gathers a per-rank tensor along the
            batch (see :func:`dim.mi.gather.all_gather_with_local_grad`); negatives
            are then drawn from the whole global batch.
        conv_local_mi: a second local term over the positions of ``encoding.conv``
            ``(B, C_c, h', w')`` (``local_maps="local+conv"``), with a critic of its
            own; the local term is then the mean of the two terms (losses and MI
            estimates; each map's estimate is capped by its own number of positions).
            Needs ``local_mi``.
    """

    def __init__(
        self,
        encoder: Encoder,
        global_mi: nn.Module | None,
        local_mi: nn.Module | None,
        prior: str,
        alpha: float,
        beta: float,
        gamma: float,
        gather: Gather | None = None,
        conv_local_mi: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_choice("prior", prior, PRIORS)
        if (prior == "kl") != encoder.stochastic:
            raise ValueError("prior 'kl' needs a stochastic encoder, the other priors a deterministic one")
        if min(alpha, beta, gamma) < 0:
            raise ValueError(f"weights must be >= 0, got alpha={alpha}, beta={beta}, gamma={gamma}")
        for name, term, weight_name, weight in [("global_mi", global_mi, "alpha", alpha),
                                                ("local_mi", local_mi, "beta", beta)]:
            if term is None and weight > 0:
                raise ValueError(f"{weight_name}={weight} weights the term {name}, which is None: "
                                 f"pass {name} or set {weight_name}=0")
            if term is not None and weight == 0:
                raise ValueError(f"{weight_name}=0 leaves {name} out of the loss: pass {name}=None or {weight_name} > 0")
        if global_mi is None and local_mi is None:
            raise ValueError("an objective needs an MI term: pass global_mi with alpha > 0 or local_mi with beta > 0")
        if conv_local_mi is not None and local_mi is None:
            raise ValueError("conv_local_mi joins the local term, which is off: pass local_mi with beta > 0")
        self.encoder = encoder
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.prior_kind = prior
        self.gather = gather
        self.global_mi = global_mi
        self.local_mi = local_mi
        self.conv_local_mi = conv_local_mi

    def forward(self, images: Tensor, views: int = 1) -> DIMOutput:
        """Images -> the objective's terms for this batch.

        Args:
            images: ``(B, C, H, W)``; with ``views=2``, ``(2B, C, H, W)``: two
                augmented views of the same B images, one after the other.
            views: 1 scores each image's features against its own code (DIM).
                2 scores each view's features against the *other* view's code
                and averages both directions (as AMDIM, Bachman et al. 2019),
                so the code keeps only what survives the augmentation.
        """
        if views not in VIEWS:
            raise ValueError(f"views must be one of {', '.join(map(str, VIEWS))}, got {views}")
        encoding = self.encoder(images)  # one pass over every view
        z = encoding.z.float()  # (V*B, Z)
        gather = self.gather or (lambda tensor: tensor)
        # (feature rows, code rows): each view's features against the other view's code
        first, second = slice(0, len(images) // 2), slice(len(images) // 2, None)
        pairings = [(slice(None), slice(None))] if views == 1 else [(first, second), (second, first)]
        global_terms, local_terms = [], []
        for features, codes in pairings:
            all_z = gather(z[codes])  # (B_global, Z)
            if self.global_mi is not None:  # (B_g, C_c*h'*w') vs z
                global_terms.append(self.global_mi(gather(encoding.conv[features].flatten(1).float()), all_z))
            if self.local_mi is not None:  # (B_g, C_l, h, w) vs z
                local_terms.append(self.local_mi(gather(encoding.local[features].float()), all_z))
            if self.conv_local_mi is not None:  # (B_g, C_c, h', w') vs z
                local_terms.append(self.conv_local_mi(gather(encoding.conv[features].float()), all_z))
        prior = gaussian_kl(encoding.mean, encoding.log_var) if self.prior_kind == "kl" else z.new_zeros(())
        return DIMOutput(encoding, _mean_bound(global_terms), _mean_bound(local_terms), prior)

    def loss(self, output: DIMOutput) -> Tensor:
        """alpha * global loss + beta * local loss + gamma * prior, a scalar."""
        total = self.gamma * output.prior
        if output.global_term is not None:
            total = total + self.alpha * output.global_term.loss
        if output.local_term is not None:
            total = total + self.beta * output.local_term.loss
        return total


def build_objective(encoder: Encoder, config: TrainConfig, gather: Gather | None = None) -> DeepInfoMax:
    """The DIM objective a resolved configuration describes, around ``encoder``.

    Each MI term is a :class:`dim.mi.MIEstimator` of the critic form
    ``config.critic`` (width ``config.critic_hidden``; cosine scores at
    ``config.critic_temperature`` when it is positive), the negatives
    ``config.negatives`` and the bound ``config.bound``: the global term if
    ``config.alpha > 0``, the local term if ``config.beta > 0``, and with
    ``config.local_maps == "local+conv"`` a second local term over the last
    convolutional map's positions.

    Args:
        encoder: the encoder the terms score the features and code of; its
            ``stochastic`` must match ``config.prior`` (``kl``: stochastic).
        config: a :class:`dim.config.TrainConfig` after
            :meth:`~dim.config.TrainConfig.resolved` (its objective settings are
            checked there).
        gather: see :class:`DeepInfoMax`.
    """
    options = {"temperature": config.critic_temperature} if config.critic_temperature > 0 else {}

    def estimator(scope: str, x_dim: int) -> MIEstimator:
        critic = make_critic(config.critic, scope, x_dim, encoder.z_dim, config.critic_hidden, **options)
        return MIEstimator(critic, make_negatives(config.negatives), make_bound(config.bound))

    global_mi = estimator("global", encoder.conv_dim) if config.alpha > 0 else None
    local_mi = estimator("local", encoder.local_shape[0]) if config.beta > 0 else None
    conv_local_mi = None
    if local_mi is not None and config.local_maps == "local+conv":
        conv_local_mi = estimator("local", encoder.conv_shape[0])
    return DeepInfoMax(encoder, global_mi, local_mi, config.prior, config.alpha, config.beta, config.gamma,
                       gather=gather, conv_local_mi=conv_local_mi)
