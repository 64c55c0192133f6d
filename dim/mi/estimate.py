"""Estimate I(X; Y) of two paired samples: preprocessing, held-out training, a k-fold interval.

:func:`estimate_mi` is the whole recipe behind one call (see ``docs/mi.md``,
"Estimating the MI of two arrays"):

1. **Rank-Gaussianise** each column of x and y (:func:`rank_gaussianize`) and
   standardise it. MI is invariant to a monotone map of each coordinate, so
   this removes long tails and warped margins (the failure cases of
   neural estimators in Czyż et al., *Beyond Normal*, NeurIPS 2023) without
   changing the quantity estimated.
2. Split the N samples into k folds. For each fold, train a critic (one of
   :data:`dim.mi.CRITICS`, global scope) with one of :data:`dim.mi.BOUNDS`
   on the other folds less a validation part, stop early on the validation
   estimate, and read the bound on the held-out fold only: a critic that is
   fixed before it sees those pairs gives, in expectation over them, a value
   of the bound, never the optimistic estimate of its own training pairs.
3. Average the k held-out estimates (every sample is held out exactly once)
   and give a Student-t interval over them.
4. Report the Gaussian (CCA) and KSG estimates of :mod:`dim.mi.baselines` on
   the same preprocessed samples, and diagnostics.

Everything is torch: NumPy arrays are accepted through ``torch.as_tensor``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from dim.mi.baselines import ArrayLike, gaussian_mi, ksg_mi, paired_columns
from dim.mi.bounds import BOUNDS, InfoNCEBound, make_bound
from dim.mi.critics import CRITICS, make_critic
from dim.mi.estimator import MIEstimator
from dim.mi.negatives import ShuffleNegatives, random_derangement

# The measured best options of each critic form for this estimator (benchmarks/mi_tasks.py, RESULTS.md).
# A separable critic's embedding must have more dimensions than the dependence has directions: the
# log density ratio of d correlated pairs is a rank-d bilinear form plus a term in x and one in y.
CRITIC_DEFAULTS: dict[str, dict[str, Any]] = {
    "concat": {"hidden_dim": 64, "num_layers": 2},
    "separable": {"hidden_dim": 256, "embed_dim": 32},
}
# AdamW's learning rate for each critic form; the separable critic's scores are products of two
# learned embeddings (the gradient with respect to one is the other), so one step moves them
# further the larger they grow, and it needs a smaller rate.
LEARNING_RATES: dict[str, float] = {"concat": 3e-3, "separable": 3e-4}
MIN_SAMPLES_PER_FOLD = 20
NATS_PER_BIT = math.log(2.0)


class ProgressBar(Protocol):
    """What :func:`estimate_mi` calls on its ``progress`` argument; a ``tqdm.tqdm()`` bar is one."""

    def reset(self, total: int | None = None) -> None: ...

    def update(self, n: int = 1) -> Any: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...


@dataclass(frozen=True)
class FoldCurve:
    """One fold's training: the estimates every ``eval_every`` steps and its held-out result.

    Attributes:
        steps: the optimiser steps at which the critic was read.
        train_mi: the bound read on (up to as many as the validation part of) its training pairs, nats.
        validation_mi: the bound read on the validation pairs, nats; early stopping watches it.
        best_step: the step whose critic was kept (the highest validation estimate).
        test_mi: that critic's estimate on the fold's held-out pairs, nats.
        num_test: the number of held-out pairs.
    """

    steps: list[int]
    train_mi: list[float]
    validation_mi: list[float]
    best_step: int
    test_mi: float
    num_test: int


@dataclass(frozen=True)
class MIEstimate:
    """The result of :func:`estimate_mi`.

    Attributes:
        nats: the estimate of I(X; Y) in nats: the held-out estimates of the
            folds, averaged with weights of their sizes.
        interval: ``(low, high)`` in nats, the ``confidence`` Student-t interval over the folds.
        confidence: the interval's nominal coverage.
        folds: each fold's training curve and held-out estimate.
        baselines: classical estimates on the same preprocessed samples, nats
            (``gaussian``, ``ksg``; a baseline that could not be computed is absent).
        diagnostics: warnings about this estimate, one sentence each; empty when nothing looked wrong.
        num_samples: N.
        settings: every option the estimate was made with.
    """

    nats: float
    interval: tuple[float, float]
    confidence: float
    folds: list[FoldCurve]
    baselines: dict[str, float]
    diagnostics: list[str]
    num_samples: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def bits(self) -> float:
        """The estimate in bits (nats / ln 2)."""
        return self.nats / NATS_PER_BIT

    @property
    def interval_bits(self) -> tuple[float, float]:
        """The interval in bits."""
        return self.interval[0] / NATS_PER_BIT, self.interval[1] / NATS_PER_BIT

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-ready types, with the estimate in both units."""
        out = asdict(self)
        out.update(bits=self.bits, interval=list(self.interval), interval_bits=list(self.interval_bits))
        return out


def rank_gaussianize(values: ArrayLike) -> Tensor:
    """Replace each column by the standard-normal quantiles of its ranks, then standardise it.

    For column values ``v_1..v_N`` with mid-ranks ``r_i`` in ``1..N`` (tied
    values share the mean of their ranks):

        g_i = Phi^{-1}( r_i / (N + 1) ),      out_i = (g_i - mean(g)) / std(g)

    (the van der Waerden scores). Each column becomes a strictly increasing
    function of the original one, so the mutual information between the
    columns of x and those of y is unchanged, while every margin becomes
    Gaussian: long tails, skew and warped scales are gone.

    Shapes:
        values: ``(N, D)``; returns ``(N, D)`` float64.

    Raises:
        ValueError: if a column is constant (it carries no information; drop it).
    """
    values = torch.as_tensor(values, dtype=torch.float64)
    columns = values.T.contiguous()  # (D, N)
    ordered = columns.sort(dim=1).values
    below = torch.searchsorted(ordered, columns, side="left")  # values strictly smaller
    not_above = torch.searchsorted(ordered, columns, side="right")  # values smaller or equal
    mid_rank = (below + not_above + 1).to(torch.float64) / 2  # (D, N), in 1..N
    scores = torch.special.ndtri(mid_rank / (values.shape[0] + 1)).T  # (N, D)
    return _standardize(scores)


def _standardize(values: Tensor) -> Tensor:
    """``(v - mean) / std`` per column, refusing constant columns."""
    spread = values.std(dim=0)
    constant = (spread == 0).nonzero().flatten().tolist()
    if constant:
        raise ValueError(f"column(s) {constant} are constant: they carry no information; drop them first")
    return (values - values.mean(dim=0)) / spread


def _student_t_quantile(p: float, dof: int) -> float:
    """The p-quantile of Student's t with ``dof`` degrees of freedom.

    Cornish-Fisher expansion around the normal quantile z (Abramowitz & Stegun
    26.7.5); within 1 % of the exact value for dof >= 2 at p = 0.975.
    """
    z = torch.special.ndtri(torch.tensor(p, dtype=torch.float64)).item()
    terms = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    )
    return z + sum(term / dof ** (power + 1) for power, term in enumerate(terms))


class _ScaledDotProduct(nn.Module):
    """A separable critic's raw dot products divided by the root of the embedding size E.

    ``T(x, y) = g(x) . h(y) / sqrt(E)``, as in scaled dot-product attention
    (Vaswani et al., NeurIPS 2017): the sum of E products of embedding
    coordinates grows like sqrt(E) at initialisation, and with it the critic's
    first ``exp(T)`` and the size of its steps; dividing keeps scores of order
    one whatever E. Scores through ``forward`` and ``pairs`` alike.
    """

    def __init__(self, critic: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.critic = critic
        self.scale = embed_dim**-0.5

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.critic(x, z) * self.scale

    def pairs(self, x: Tensor, z: Tensor, x_index: Tensor) -> Tensor:
        return self.critic.pairs(x, z, x_index) * self.scale


def build_critic(form: str, x_dim: int, y_dim: int, options: Mapping[str, Any]) -> nn.Module:
    """The critic :func:`estimate_mi` trains: ``make_critic(form, "global", x_dim, y_dim, **options)``, and for a
    separable critic with raw dot products (no ``temperature``) its scores divided by ``sqrt(embed_dim)``.
    """
    critic = make_critic(form, "global", x_dim, y_dim, **options)
    if form == "separable" and options.get("temperature") is None:
        return _ScaledDotProduct(critic, options["embed_dim"])
    return critic


class _Reader:
    """Reads a bound on a fixed set of pairs: each positive against the same ``K`` shuffled negatives every time.

    Fixing the negatives makes successive readings of a changing critic
    comparable (early stopping compares them). Pairs are scored in chunks of
    ``chunk_size``, through the critic's ``pairs`` with one pair per row.
    """

    def __init__(self, x: Tensor, y: Tensor, num_negatives: int, chunk_size: int = 8192) -> None:
        n = x.shape[0]
        self.x, self.y, self.chunk_size = x, y, chunk_size
        # Row i of x_rows: i itself (the positive), then K derangements (negatives).
        columns = [torch.arange(n, device=x.device)] + [random_derangement(n, x.device) for _ in range(num_negatives)]
        self.x_rows = torch.stack(columns, dim=1)  # (n, 1 + K)

    @torch.no_grad()
    def __call__(self, critic: nn.Module, bound: nn.Module) -> float:
        flat_x = self.x_rows.flatten()  # (n (1 + K),)
        flat_y = torch.arange(self.x.shape[0], device=self.x.device).repeat_interleave(self.x_rows.shape[1])
        scores = []
        for start in range(0, flat_x.numel(), self.chunk_size):
            xs, ys = self.x[flat_x[start : start + self.chunk_size]], self.y[flat_y[start : start + self.chunk_size]]
            diagonal = torch.arange(xs.shape[0], device=xs.device)[:, None]  # score pair m as (x_m, y_m)
            scores.append(critic.pairs(xs, ys, diagonal).squeeze(1))
        scores = torch.cat(scores).view_as(self.x_rows).float()  # (n, 1 + K)
        return bound(scores[:, 0], scores[:, 1:]).mi.item()


def _shuffled_bound(name: str) -> nn.Module:
    """The bound for K shuffled negatives per positive: InfoNCE then accepts K < B - 1 (capped at log(K + 1))."""
    return InfoNCEBound(require_all_pairs=False) if name == "infonce" else make_bound(name)


def _fit_fold(
    critic: nn.Module,
    bound_name: str,
    train: tuple[Tensor, Tensor],
    validation: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    options: Mapping[str, Any],
    progress: ProgressBar | None,
    status: str,
) -> FoldCurve:
    """Train ``critic`` on ``train`` with early stopping on ``validation``; read it on ``test``."""
    x_train, y_train = train
    n_train = x_train.shape[0]
    batch_size = min(options["batch_size"], n_train)
    bound = _shuffled_bound(bound_name)  # trained and read
    objective = MIEstimator(critic, ShuffleNegatives(options["negatives"]), bound)
    fused = True if x_train.device.type in ("cpu", "cuda") else None  # one kernel for all parameters where torch has it
    optimizer = torch.optim.AdamW(critic.parameters(), lr=options["lr"], weight_decay=options["weight_decay"],
                                  fused=fused)
    read_validation = _Reader(*validation, options["eval_negatives"])
    n_watch = min(n_train, validation[0].shape[0])
    read_train = _Reader(x_train[:n_watch], y_train[:n_watch], options["eval_negatives"])

    steps: list[int] = []
    train_mi: list[float] = []
    validation_mi: list[float] = []
    best_value, best_state, best_step, waited = -math.inf, copy.deepcopy(critic.state_dict()), 0, 0
    order = torch.randperm(n_train, device=x_train.device)
    cursor, step = 0, 0
    while step < options["max_steps"]:
        if cursor + batch_size > n_train:  # a new epoch
            order, cursor = torch.randperm(n_train, device=x_train.device), 0
        batch = order[cursor : cursor + batch_size]
        cursor += batch_size
        loss, _ = objective(x_train[batch], y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if progress is not None:
            progress.update(1)
        if step % options["eval_every"] and step < options["max_steps"]:
            continue
        critic.eval()
        steps.append(step)
        train_mi.append(read_train(critic, bound))
        validation_mi.append(read_validation(critic, bound))
        critic.train()
        if validation_mi[-1] > best_value:
            best_value, best_state, best_step, waited = validation_mi[-1], copy.deepcopy(critic.state_dict()), step, 0
        else:
            waited += 1
        if progress is not None:
            progress.set_postfix_str(f"{status}, validation {best_value:.3f} nats")
        if waited >= options["patience"]:
            break
    if progress is not None:
        progress.update(options["max_steps"] - step)  # the steps early stopping saved
    critic.load_state_dict(best_state)
    critic.eval()
    test_mi = _Reader(*test, options["eval_negatives"])(critic, bound)
    return FoldCurve(steps, train_mi, validation_mi, best_step, test_mi, test[0].shape[0])


def _check_options(critic: str, bound: str, folds: int, n: int, options: Mapping[str, Any]) -> None:
    if critic not in CRITICS:
        raise ValueError(f"unknown critic {critic!r}; choose one of {', '.join(CRITICS)}")
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; choose one of {', '.join(BOUNDS)}")
    if folds < 3:
        raise ValueError(f"folds must be >= 3 (k held-out estimates give the interval), got {folds}")
    if n < MIN_SAMPLES_PER_FOLD * folds:
        raise ValueError(f"too few samples: {n} for {folds} folds; at least {MIN_SAMPLES_PER_FOLD} per fold "
                         f"({MIN_SAMPLES_PER_FOLD * folds}) are needed, and a neural estimate wants thousands")
    for name in ("max_steps", "batch_size", "negatives", "eval_negatives", "eval_every", "patience"):
        if options[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {options[name]}")
    if options["weight_decay"] < 0:
        raise ValueError(f"weight_decay must be >= 0, got {options['weight_decay']}")
    if not 0 < options["validation_fraction"] < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {options['validation_fraction']}")
    if not 0 < options["confidence"] < 1:
        raise ValueError(f"confidence must be in (0, 1), got {options['confidence']}")


def _baselines(x: Tensor, y: Tensor, max_samples: int, generator: torch.Generator) -> tuple[dict, list[str]]:
    """The Gaussian and KSG estimates (KSG on at most ``max_samples`` rows), and why any is missing."""
    found, missing = {}, []
    try:
        found["gaussian"] = gaussian_mi(x, y, bias_correction=True).item()
    except ValueError as error:
        missing.append(f"no Gaussian baseline: {error}")
    rows = torch.randperm(x.shape[0], generator=generator)[:max_samples]
    try:
        found["ksg"] = ksg_mi(x[rows], y[rows]).item()
    except ValueError as error:
        missing.append(f"no KSG baseline: {error}")
    return found, missing


def _diagnose(result_folds: list[FoldCurve], nats: float, interval: tuple[float, float], baselines: dict,
              options: Mapping[str, Any]) -> list[str]:
    """Sentences about what looks wrong with an estimate."""
    notes = []
    unfinished = sum(fold.best_step >= options["max_steps"] - options["eval_every"] for fold in result_folds)
    if unfinished:
        notes.append(f"not converged: the validation estimate was still rising at max_steps={options['max_steps']} "
                     f"in {unfinished} of {len(result_folds)} folds; raise max_steps")
    gaps = []
    for fold in result_folds:
        at_best = fold.steps.index(fold.best_step) if fold.best_step in fold.steps else -1
        gaps.append(fold.train_mi[at_best] - fold.validation_mi[at_best])
    gap = sum(gaps) / len(gaps)
    if gap > max(0.1, 0.5 * abs(nats)):
        notes.append(f"too few samples for this critic: it reads {gap:.3f} nats more on its training pairs than on "
                     "held-out ones; a smaller critic (critic_options hidden_dim) or more samples")
    half_width = (interval[1] - interval[0]) / 2
    if half_width > max(0.1, 0.25 * abs(nats)):
        notes.append(f"the folds disagree (interval ±{half_width:.3f} nats): more samples, or more steps")
    if interval[0] <= 0:
        notes.append("no dependence detected: the interval includes 0 (MI is >= 0; a held-out lower bound may "
                     "read below it)")
    for name, value in baselines.items():
        if value > interval[1] + 0.05:
            notes.append(f"the {name} baseline ({value:.3f} nats) is above the interval: unless the baseline is off "
                         "here (KSG with few samples, the Gaussian on non-Gaussian ranks), the critic has missed part "
                         "of the dependence (a larger critic, more steps or more samples may help)")
    if not math.isfinite(nats):
        notes.append("the bound's readout overflowed (exp of a huge score): try bound='jsd' or a smaller lr")
    if options["bound"] == "infonce" and nats > math.log(options["eval_negatives"] + 1) - 0.1:
        notes.append(f"InfoNCE saturates at log(K + 1) = {math.log(options['eval_negatives'] + 1):.3f} nats with "
                     "K = eval_negatives: the MI may be higher; use bound='jsd'")
    return notes


def estimate_mi(
    x: ArrayLike,
    y: ArrayLike,
    *,
    critic: str = "concat",
    bound: str = "jsd",
    critic_options: Mapping[str, Any] | None = None,
    lr: float | None = None,
    weight_decay: float = 1.0,
    folds: int = 5,
    validation_fraction: float = 0.2,
    max_steps: int = 5000,
    batch_size: int = 256,
    negatives: int = 4,
    eval_negatives: int = 64,
    eval_every: int = 200,
    patience: int = 8,
    rank_gaussian: bool = True,
    held_out: bool = True,
    baselines: bool = True,
    ksg_max_samples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: ProgressBar | None = None,
) -> MIEstimate:
    """Estimate I(X; Y) in nats from N paired samples, with an interval and diagnostics.

    The recipe (module docstring; ``docs/mi.md``):

    1. each column of x and y is rank-Gaussianised (:func:`rank_gaussianize`),
       or only standardised with ``rank_gaussian=False``;
    2. the samples are split at random into ``folds`` folds ``F_1..F_k``; for
       fold f a fresh critic T_f is trained on the other folds less a random
       ``validation_fraction`` of them, with AdamW, ``batch_size`` pairs a step
       and ``negatives`` shuffled negatives per pair; every ``eval_every`` steps
       the bound is read on the validation pairs, and training stops after
       ``patience`` readings without a new best (or at ``max_steps``); the
       best-reading critic is kept;
    3. ``I_f`` is the bound read with T_f on F_f, each pair against the same
       ``eval_negatives`` shuffled partners of F_f, e.g. for ``jsd``
       ``I_f = 1 + mean_{i in F_f} T_f(x_i, y_i) - mean_{i, k} exp T_f(x_{pi_k(i)}, y_i)``;
    4. the estimate is ``I = sum_f |F_f| I_f / N`` and the interval
       ``I ± t_{k-1, (1 + confidence)/2} s / sqrt(k)`` with ``s`` the standard
       deviation of the ``I_f`` (the folds' training sets overlap, so read it as
       the spread of the procedure over the data, not an exact coverage);
    5. baselines: :func:`dim.mi.baselines.gaussian_mi` (bias-corrected) and
       :func:`dim.mi.baselines.ksg_mi` on the same preprocessed samples (KSG on
       at most ``ksg_max_samples`` of them: it costs ``N^2``).

    Args:
        x: ``(N, D_x)`` or ``(N,)`` samples, a tensor or anything ``torch.as_tensor`` takes.
        y: ``(N, D_y)`` or ``(N,)`` samples, row i paired with row i of x.
        critic: a form of :data:`dim.mi.CRITICS` (global scope).
        bound: a key of :data:`dim.mi.BOUNDS`; trained and read on held-out pairs.
        critic_options: overrides of :data:`CRITIC_DEFAULTS` for the critic (``hidden_dim``, ...).
        lr: AdamW's learning rate (default: :data:`LEARNING_RATES` of the critic).
        weight_decay: AdamW's decoupled weight decay (each step scales the
            weights by ``1 - lr * weight_decay``); it keeps the critic from
            memorising its training pairs.
        folds: k >= 3.
        validation_fraction: the part of each fold's training samples kept to stop early on.
        max_steps: the most optimiser steps per fold.
        batch_size: positive pairs per step.
        negatives: shuffled negatives per positive in training.
        eval_negatives: shuffled negatives per positive when reading the bound.
        eval_every: steps between readings of the validation estimate.
        patience: readings without a new best before stopping.
        rank_gaussian: rank-Gaussianise each column (True) or only standardise it.
        held_out: read the bound on held-out pairs (True). False reads it on the
            critic's own training pairs, which is biased upwards; it warns.
        baselines: also compute the Gaussian and KSG estimates.
        ksg_max_samples: KSG runs on a random subset of at most this many samples.
        confidence: the interval's nominal coverage.
        seed: seeds the split, the critics and the batches (the caller's RNG state is left as it was).
        device: where the critics train.
        progress: a progress bar to advance, e.g. ``tqdm.tqdm(unit="step")``
            (see :class:`ProgressBar`); None for none.

    Returns:
        An :class:`MIEstimate`.

    Raises:
        ValueError: if the rows of x and y differ in number, a value is NaN or
            infinite, a column is constant, there are fewer than
            ``20 * folds`` samples, or an option is out of range.
    """
    device = torch.device(device)
    options = {  # every setting, as the result records them
        "critic": critic,
        "bound": bound,
        "critic_options": {**CRITIC_DEFAULTS.get(critic, {}), **(critic_options or {})},
        "lr": LEARNING_RATES.get(critic) if lr is None else lr,
        "weight_decay": weight_decay,
        "folds": folds,
        "validation_fraction": validation_fraction,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "negatives": negatives,
        "eval_negatives": eval_negatives,
        "eval_every": eval_every,
        "patience": patience,
        "rank_gaussian": rank_gaussian,
        "held_out": held_out,
        "baselines": baselines,
        "ksg_max_samples": ksg_max_samples,
        "confidence": confidence,
        "seed": seed,
        "device": str(device),
    }
    x, y = paired_columns(x, y)
    n = x.shape[0]
    _check_options(critic, bound, folds, n, options)
    if not held_out:
        warnings.warn("held_out=False reads the bound on the critic's own training pairs: the estimate is biased "
                      "upwards", stacklevel=2)
    prepare = rank_gaussianize if rank_gaussian else _standardize
    x, y = prepare(x), prepare(y)

    generator = torch.Generator().manual_seed(seed)
    found, notes = _baselines(x, y, ksg_max_samples, generator) if baselines else ({}, [])
    x, y = x.to(device, torch.float32), y.to(device, torch.float32)
    fold_of = torch.randperm(n, generator=generator) % folds  # (N,): each sample's fold, sizes within 1
    if progress is not None:
        progress.reset(total=folds * max_steps)

    results = []
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        for f in range(folds):
            test = (fold_of == f).nonzero().flatten()
            rest = (fold_of != f).nonzero().flatten()
            rest = rest[torch.randperm(len(rest), generator=generator)]
            n_validation = max(MIN_SAMPLES_PER_FOLD // 2, round(validation_fraction * len(rest)))
            validation, train = rest[:n_validation], rest[n_validation:]
            if not held_out:
                test = train
            model = build_critic(critic, x.shape[1], y.shape[1], options["critic_options"]).to(device)
            results.append(_fit_fold(model, bound, (x[train], y[train]), (x[validation], y[validation]),
                                     (x[test], y[test]), options, progress, f"fold {f + 1}/{folds}"))

    estimates = torch.tensor([fold.test_mi for fold in results], dtype=torch.float64)
    weights = torch.tensor([fold.num_test for fold in results], dtype=torch.float64)
    nats = (estimates * weights).sum().item() / weights.sum().item()
    half_width = _student_t_quantile((1 + confidence) / 2, folds - 1) * estimates.std().item() / math.sqrt(folds)
    interval = (nats - half_width, nats + half_width)
    notes += _diagnose(results, nats, interval, found, options)
    if not held_out:
        notes.insert(0, "estimated on the critic's own training pairs: biased upwards (held_out=True is not)")
    return MIEstimate(nats, interval, confidence, results, found, notes, n, options)
