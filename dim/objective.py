"""The Deep InfoMax objective: alpha * global MI + beta * local MI + gamma * prior.

Hjelm et al., *Learning deep representations by mutual information
estimation and maximization*, ICLR 2019, eq. 8:

    min  -alpha * I_global(x, z)  -  beta * mean_ij I_local(C_ij(x), z)  +  gamma * prior(z).

Each MI term is an :class:`dim.mi.MIEstimator` (critic + negative sampler +
bound) from the shared MI module (``docs/mi.md``):

* global: the flattened last convolutional map against the code z. DIM's
  global discriminator encodes C(x) with a further convolution and flattens
  it; the encoder's last convolution already does exactly that, so its output
  is reused: concatenating x and z and compressing again amounts to sharing
  the encoder (``docs/dim.md``).
* local: every position C_ij of the intermediate map C(x) against z
  (``local_maps="local+conv"``: also every position of the last convolutional map).

Negatives ``"locations"`` is the DIM paper's local infoNCE: each position of an
image is classified against *every position of every other image* in the batch,
``(B - 1) * H * W`` negatives per positive. The log-sum-exp over those
negatives is the same for all positions of a row, so it is computed once per
row (:class:`CrossLocationInfoNCE`), not once per position.

The valid values of each choice (:data:`BOUNDS`, :data:`NEGATIVES`,
:data:`CRITICS`, :data:`PRIORS`, :data:`VIEWS`) are defined here, from the MI
module's registries where it has one, and checked by :func:`check_objective`,
which both :meth:`dim.config.TrainConfig.resolved` and :class:`DeepInfoMax` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dim.mi import BOUNDS as MI_BOUNDS
from dim.mi import CRITICS as MI_CRITICS
from dim.mi import NEGATIVES as MI_NEGATIVES
from dim.mi import (
    AllPairsNegatives,
    BoundOutput,
    MIEstimator,
    gaussian_kl,
    make_bound,
    make_critic,
    make_negatives,
)
from dim.models import Encoder, Encoding

# The valid values of DIM's choices: the MI module's registries, plus DIM's own.
BOUNDS: tuple[str, ...] = tuple(MI_BOUNDS)
NEGATIVES: tuple[str, ...] = (*MI_NEGATIVES, "locations")  # + the cross-location infoNCE below
CRITICS: tuple[str, ...] = tuple(MI_CRITICS)
PRIORS: tuple[str, ...] = ("kl", "adversarial", "none")
VIEWS: tuple[int, ...] = (1, 2)
# The maps whose positions the local term scores against the code: the intermediate map C(x) alone (DIM), or
# also the last convolutional map's positions (a multi-scale local term, after AMDIM's 1->5 / 1->7 pairs).
LOCAL_MAPS: tuple[str, ...] = ("local", "local+conv")

Gather = Callable[[Tensor], Tensor]


class CrossLocationInfoNCE(nn.Module):
    """Local infoNCE with every position of every other image as a negative (the DIM paper).

    With ``s[i, j, l] = T(C_l(x_j), z_i)`` from the critic's all-pairs scores,
    the positive of row i at position l is ``s[i, i, l]`` and its negatives are
    all ``s[i, j, l']`` with ``j != i``, shared by the whole row:

        N_i  = logsumexp_{j != i, l'} s[i, j, l']                      (once per row)
        mi   = mean_{i,l} [ s[i,i,l] - logaddexp(s[i,i,l], N_i) ] + log(1 + (B - 1) L)
        loss = -mi

    Args:
        critic: a local critic (``critic(x, z) -> (B, B, L)``); a separable one
            makes the ``B * B * L`` scores a single matrix product.
    """

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, x: Tensor, z: Tensor) -> BoundOutput:
        scores = self.critic(x, z).float()  # (B, B, L)
        batch, _, locations = scores.shape
        if batch < 2:
            raise ValueError(f"negative sampling needs a batch of at least 2 samples, got {batch}")
        positive = scores.diagonal(dim1=0, dim2=1).t()  # (B, L)
        own = torch.eye(batch, dtype=torch.bool, device=scores.device)[:, :, None]  # (B, B, 1)
        negative = torch.logsumexp(scores.masked_fill(own, float("-inf")).flatten(1), dim=1)  # (B,)
        log_ratio = positive - torch.logaddexp(positive, negative[:, None])  # (B, L)
        mi = log_ratio.mean() + math.log(1 + (batch - 1) * locations)
        return BoundOutput(loss=-mi, mi=mi.detach())


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
    """Check the settings of the DIM objective, alone and together (``ValueError`` if wrong)."""
    for name, value, choices in [
        ("bound", bound, BOUNDS),
        ("negatives", negatives, NEGATIVES),
        ("critic", critic, CRITICS),
        ("prior", prior, PRIORS),
        ("local_maps", local_maps, LOCAL_MAPS),
    ]:
        check_choice(name, value, choices)
    if negatives == "locations" and bound != "infonce":
        raise ValueError("negatives 'locations' is the cross-location infoNCE; use it with --bound infonce")
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

    Args:
        encoder: the :class:`dim.models.Encoder` being trained.
        bound: the MI bound of both terms, one of :data:`BOUNDS` (see :data:`dim.mi.BOUNDS`).
        negatives: ``shuffle`` (one shuffled negative per positive, as in Su
            Jianlin's 2018 derivation, kexue.fm/archives/6024), ``all`` (all in-batch pairs, per position for
            the local term) or ``locations`` (``all`` for the global term; for the
            local term the cross-location infoNCE above, bound ``infonce`` only).
        critic: the critic form of both terms (see :data:`dim.mi.CRITICS`):
            ``concat`` (MLP / 1x1 convolutions over ``[x, z]``) or ``separable``
            (dot product of projections).
        prior: ``kl`` (closed-form KL of the Gaussian code to N(0, I)),
            ``adversarial`` (see :class:`AdversarialPrior`, which the trainer
            holds next to this module) or ``none``.
        alpha: weight of the global MI term.
        beta: weight of the local MI term.
        gamma: weight of the prior term.
        critic_hidden: hidden width of the critics.
        critic_temperature: 0 for the separable critics' raw dot products, else the
            temperature of their cosine scores (see :class:`dim.mi.GlobalSeparableCritic`).
        local_maps: one of :data:`LOCAL_MAPS`: ``local`` scores the positions of
            ``encoding.local`` (``(B, C_l, h, w)``) against z; ``local+conv`` also
            those of ``encoding.conv`` (``(B, C_c, h', w')``), with a critic of its own,
            and the local term is the mean of the two terms (losses and MI estimates;
            each map's estimate is capped by its own number of positions).
        gather: for DDP, a function that all-gathers a per-rank tensor along the
            batch (see :func:`dim.mi.gather.all_gather_with_local_grad`); negatives
            are then drawn from the whole global batch.
    """

    def __init__(
        self,
        encoder: Encoder,
        bound: str = "jsd",
        negatives: str = "shuffle",
        critic: str = "concat",
        prior: str = "kl",
        alpha: float = 0.5,
        beta: float = 1.5,
        gamma: float = 0.01,
        critic_hidden: int = 256,
        gather: Gather | None = None,
        critic_temperature: float = 0.0,
        local_maps: str = "local",
    ) -> None:
        super().__init__()
        check_objective(bound, negatives, critic, prior, alpha, beta, gamma, critic_temperature, local_maps)
        if (prior == "kl") != encoder.stochastic:
            raise ValueError("prior 'kl' needs a stochastic encoder, the other priors a deterministic one")
        self.encoder = encoder
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.prior_kind = prior
        self.gather = gather
        sampler = AllPairsNegatives() if negatives == "locations" else make_negatives(negatives)
        options = {"temperature": critic_temperature} if critic_temperature > 0 else {}
        self.global_mi: nn.Module | None = None
        self.local_mi: nn.Module | None = None
        self.conv_local_mi: nn.Module | None = None  # the positions of the last conv map, for local+conv

        def local_estimator(channels: int) -> nn.Module:
            local_critic = make_critic(critic, "local", channels, encoder.z_dim, critic_hidden, **options)
            if negatives == "locations":
                return CrossLocationInfoNCE(local_critic)
            return MIEstimator(local_critic, sampler, make_bound(bound))

        if alpha > 0:
            global_critic = make_critic(critic, "global", encoder.conv_dim, encoder.z_dim, critic_hidden, **options)
            self.global_mi = MIEstimator(global_critic, sampler, make_bound(bound))
        if beta > 0:
            self.local_mi = local_estimator(encoder.local_shape[0])
            if local_maps == "local+conv":
                self.conv_local_mi = local_estimator(encoder.conv_shape[0])

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
