"""MI estimators against closed-form truth on tasks of the BMI benchmark (Czyż et al., NeurIPS 2023).

Czyż, Grabowski, Vogt, Beerenwinkel & Marx, *Beyond Normal: On the Evaluation
of Mutual Information Estimators*, NeurIPS 2023: each task is a distribution
with known I(X; Y); transforms that are invertible on X and on Y (normal CDF,
half-cube, asinh, spiral) leave the MI of their base task unchanged. Every
estimator sees the same N samples of each task and seed:

* ``dim.mi.estimate_mi`` with its defaults (rank-Gaussianised, 5-fold held-out estimate);
* torch-mist's ``estimate_mi`` with its defaults (SMILE, tau = 5, one hidden layer of 128),
  trained on 80 % of the samples and read on the other 20 % (its ``test_data``);
  needs ``pip install -e '.[benchmark]'``, otherwise its column is left out;
* the Gaussian (CCA, bias-corrected) and KSG (k = 3) estimates of ``dim.mi.baselines``
  on the rank-Gaussianised samples, as ``estimate_mi`` reports them.

A task passes when the mean of its seeds' estimates is within max(0.1 nats, 10 %) of
the truth. ``cover`` is the share of seeds whose interval holds the truth.

    python benchmarks/mi_tasks.py                                  # every task, 10 seeds
    python benchmarks/mi_tasks.py --seeds 2 --tasks normal-1x1,student-2x2-df1
    python benchmarks/mi_tasks.py --staircase --critic separable   # d = 20 Gaussians at 2..10 nats
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import digamma, gammaln

from dim.mi import estimate_mi, rank_gaussianize

Sample = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Task:
    name: str
    mi: float  # nats
    sample: Sample


# --- base distributions ------------------------------------------------------------------------------------------------

def normal_mi(covariance: np.ndarray, dim_x: int) -> float:
    """1/2 (log det S_xx + log det S_yy - log det S)."""
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    return 0.5 * (logdet(covariance[:dim_x, :dim_x]) + logdet(covariance[dim_x:, dim_x:]) - logdet(covariance))


def dense_covariance(dim: int, off_diagonal: float = 0.5) -> np.ndarray:
    """BMI's dense multinormal: every pair of the 2 * dim coordinates correlated by ``off_diagonal``."""
    return np.eye(2 * dim) * (1 - off_diagonal) + off_diagonal


def sparse_covariance(dim: int, strength: float = 2.0) -> np.ndarray:
    """BMI's sparse ("2-pair") multinormal: X_i = Z_i + E_i, Y_i = Z_i + F_i for i < 2 (Z of variance strength^2),
    the other coordinates independent, all scaled to unit variance: corr(X_i, Y_i) = 0.8 for i < 2, else 0."""
    covariance = np.eye(2 * dim) * (1 + strength**2)
    for i in range(2):
        covariance[i, dim + i] = covariance[dim + i, i] = strength**2
    scale = np.sqrt(np.diag(covariance))
    return covariance / np.outer(scale, scale)


def normal(covariance: np.ndarray, dim_x: int) -> Task:
    def sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        xy = rng.multivariate_normal(np.zeros(len(covariance)), covariance, size=n)
        return xy[:, :dim_x], xy[:, dim_x:]

    return Task("", normal_mi(covariance, dim_x), sample)


def student_entropy(dim: int, dof: int) -> float:
    """Differential entropy of the standard multivariate Student-t (Arellano-Valle et al., Scand. J. Stat. 2013)."""
    half = 0.5 * (dof + dim)
    return -gammaln(half) + gammaln(0.5 * dof) + 0.5 * dim * math.log(dof * math.pi) + half * (
        digamma(half) - digamma(0.5 * dof))


def student(dim: int, dof: int) -> Task:
    """Student-t with identity dispersion: dependent only through the shared scale, I = h(X) + h(Y) - h(X, Y)."""

    def sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        xy = rng.standard_normal((n, 2 * dim)) / np.sqrt(rng.chisquare(dof, size=(n, 1)) / dof)
        return xy[:, :dim], xy[:, dim:]

    return Task("", 2 * student_entropy(dim, dof) - student_entropy(2 * dim, dof), sample)


def additive_noise(epsilon: float) -> Task:
    """X ~ U(0, 1), Y = X + U(-eps, eps): I = eps - log(2 eps) for eps <= 1/2, else 1 / (4 eps)."""

    def sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(0, 1, size=(n, 1))
        return x, x + rng.uniform(-epsilon, epsilon, size=(n, 1))

    return Task("", epsilon - math.log(2 * epsilon) if epsilon <= 0.5 else 0.25 / epsilon, sample)


# --- transforms (invertible on X and on Y: the MI is the base task's) --------------------------------------------------

def normal_cdf(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + torch.special.erf(torch.from_numpy(v) / math.sqrt(2)).numpy())


def half_cube(v: np.ndarray) -> np.ndarray:
    return v * np.sqrt(np.abs(v))


def spiral(i: int, j: int, speed: float = 1 / 3) -> Callable[[np.ndarray], np.ndarray]:
    """v -> exp(speed |v|^2 A_ij) v: a rotation in the (i, j) plane by speed * |v|^2 radians (BMI's spiral)."""

    def transform(v: np.ndarray) -> np.ndarray:
        angle = speed * (v**2).sum(axis=1)
        out = v.copy()
        out[:, i] = np.cos(angle) * v[:, i] - np.sin(angle) * v[:, j]
        out[:, j] = np.sin(angle) * v[:, i] + np.cos(angle) * v[:, j]
        return out

    return transform


def transformed(base: Task, transform_x: Callable, transform_y: Callable | None = None) -> Task:
    def sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x, y = base.sample(n, rng)
        return transform_x(x), (transform_y or transform_x)(y)

    return Task("", base.mi, sample)


def named(name: str, task: Task) -> Task:
    return Task(name, task.mi, task.sample)


def bmi_tasks() -> list[Task]:
    binormal = normal(np.array([[1.0, 0.75], [0.75, 1.0]]), 1)
    return [
        named("normal-1x1", binormal),
        named("normal-cdf-1x1", transformed(binormal, normal_cdf)),
        named("half-cube-1x1", transformed(binormal, half_cube)),
        named("additive-0.1", additive_noise(0.1)),
        named("additive-0.75", additive_noise(0.75)),
        named("student-1x1-df1", student(1, 1)),
        named("asinh-student-1x1-df1", transformed(student(1, 1), np.arcsinh)),
        *[named(f"dense-{d}x{d}", normal(dense_covariance(d), d)) for d in (2, 5, 25, 50)],
        *[named(f"sparse-{d}x{d}", normal(sparse_covariance(d), d)) for d in (2, 5, 25)],
        named("student-2x2-df1", student(2, 1)),
        named("student-3x3-df2", student(3, 2)),
        named("student-5x5-df3", student(5, 3)),
        named("normal-cdf-sparse-5x5", transformed(normal(sparse_covariance(5), 5), normal_cdf)),
        named("half-cube-sparse-5x5", transformed(normal(sparse_covariance(5), 5), half_cube)),
        named("spiral-sparse-3x3", transformed(normal(sparse_covariance(3), 3), spiral(0, 1), spiral(1, 2))),
        named("spiral-sparse-5x5", transformed(normal(sparse_covariance(5), 5), spiral(0, 1), spiral(1, 2))),
        named("asinh-student-2x2-df1", transformed(student(2, 1), np.arcsinh)),
        named("asinh-student-3x3-df2", transformed(student(3, 2), np.arcsinh)),
    ]


def staircase_tasks(dim: int = 20) -> list[Task]:
    """benchmarks/mi_gaussian.py's levels: x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps, I = -d/2 log(1 - rho^2)."""
    tasks = []
    for level in (2, 4, 6, 8, 10):
        rho = math.sqrt(1 - math.exp(-2 * level / dim))
        covariance = np.block([[np.eye(dim), rho * np.eye(dim)], [rho * np.eye(dim), np.eye(dim)]])
        tasks.append(named(f"gaussian-{dim}x{dim}-{level}nats", normal(covariance, dim)))
    return tasks


# --- estimators ----------------------------------------------------------------------------------------------------------

def torch_mist_estimate(x: np.ndarray, y: np.ndarray, seed: int) -> float | None:
    """torch-mist's estimate_mi with its defaults, trained on 80 % and read on the other 20 %; None if not installed."""
    try:
        from torch_mist import estimate_mi as mist_estimate_mi
    except ImportError:
        return None
    torch.manual_seed(seed)
    order = torch.randperm(len(x))
    cut = int(0.8 * len(x))
    xs, ys = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    train, test = order[:cut], order[cut:]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its defaults
        value = mist_estimate_mi(data={"x": xs[train], "y": ys[train]}, test_data={"x": xs[test], "y": ys[test]},
                                 verbose=False, logger=False)
    return float(value)


def run(tasks: list[Task], seeds: int, n: int, options: dict, with_mist: bool) -> list[dict]:
    """Every task and seed through every estimator.

    A transform that is monotone in each coordinate (normal CDF, half-cube, asinh) leaves the ranks of its base
    task's samples as they were, so ``estimate_mi`` sees exactly the same rank-Gaussianised samples and returns the
    same result: it is computed once and reused (the timing is the first run's).
    """
    rows, done = [], {}
    for task in tasks:
        for seed in range(seeds):
            x, y = task.sample(n, np.random.default_rng(seed))
            ranks = (rank_gaussianize(torch.as_tensor(x)), rank_gaussianize(torch.as_tensor(y)))
            key = (seed, hashlib.sha256(ranks[0].numpy().tobytes() + ranks[1].numpy().tobytes()).hexdigest())
            if key not in done:
                started = time.perf_counter()
                done[key] = estimate_mi(x, y, seed=seed, **options), time.perf_counter() - started
            result, seconds = done[key]
            mist = torch_mist_estimate(x, y, seed) if with_mist else None
            rows.append({"task": task.name, "seed": seed, "true_mi": task.mi, "estimate": result.nats,
                         "interval": list(result.interval), "seconds": seconds, "torch_mist": mist,
                         **{name: value for name, value in result.baselines.items()}})
            print(f"  {task.name:24s} seed {seed}: true {task.mi:.3f}  ours {result.nats:.3f} "
                  f"[{result.interval[0]:.3f}, {result.interval[1]:.3f}] ({seconds:.0f}s)"
                  + ("" if mist is None else f"  torch-mist {mist:.3f}"), file=sys.stderr, flush=True)
    return rows


def tolerance(true_mi: float) -> float:
    return max(0.1, 0.1 * true_mi)


def summarise(rows: list[dict]) -> None:
    columns = {"estimate": "dim.mi", "torch_mist": "torch-mist", "gaussian": "CCA", "ksg": "KSG"}  # row key: label
    present = [c for c in columns if any(row.get(c) is not None for row in rows)]
    print(f"{'task':24s}{'true':>7s}" + "".join(f"{columns[c]:>14s}" for c in present) + f"{'cover':>7s}{'s/run':>7s}")
    passed, errors = {c: 0 for c in present}, {c: [] for c in present}
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    for name in tasks:
        mine = [row for row in rows if row["task"] == name]
        truth = mine[0]["true_mi"]
        line = f"{name:24s}{truth:7.3f}"
        for c in present:
            values = [row[c] for row in mine if row.get(c) is not None]
            mean = statistics.fmean(values)
            ok = abs(mean - truth) <= tolerance(truth)
            passed[c] += ok
            errors[c] += [abs(v - truth) for v in values]
            line += f"{mean:8.3f}±{statistics.pstdev(values):.2f}{'*' if ok else ' '}"
        cover = statistics.fmean(row["interval"][0] <= truth <= row["interval"][1] for row in mine)
        print(line + f"{cover:7.0%}{statistics.fmean(row['seconds'] for row in mine):7.0f}")
    print("\nmean ± standard deviation over seeds; * the mean is within max(0.1 nats, 10 %) of the truth; cover: the "
          "share of seeds whose interval holds the truth; s/run: seconds per estimate_mi call")
    for c in present:
        print(f"{columns[c]:12s}: {passed[c]}/{len(tasks)} tasks within tolerance ({passed[c] / len(tasks):.0%}), "
              f"median |error| over all runs {statistics.median(errors[c]):.3f} nats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="all", help="comma-separated task names (default: all)")
    parser.add_argument("--staircase", action="store_true", help="the d = 20 Gaussian staircase instead of BMI's tasks")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n", type=int, default=5000, help="samples per task and seed")
    parser.add_argument("--critic", default="concat", help="estimate_mi's critic")
    parser.add_argument("--bound", default="jsd", help="estimate_mi's bound")
    parser.add_argument("--no-torch-mist", action="store_true", help="leave torch-mist out")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print every run as one JSON list, the last line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks = staircase_tasks() if args.staircase else bmi_tasks()
    if args.tasks != "all":
        wanted = args.tasks.split(",")
        unknown = set(wanted) - {task.name for task in tasks}
        if unknown:
            parser.error(f"unknown tasks {sorted(unknown)}; choose from {', '.join(task.name for task in tasks)}")
        tasks = [task for task in tasks if task.name in wanted]
    started = time.perf_counter()
    rows = run(tasks, args.seeds, args.n, {"critic": args.critic, "bound": args.bound}, not args.no_torch_mist)
    print(f"\n{len(tasks)} tasks x {args.seeds} seeds, N = {args.n}, estimate_mi(critic={args.critic!r}, "
          f"bound={args.bound!r}), {args.threads} torch thread(s), {time.perf_counter() - started:.0f} s in all")
    summarise(rows)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
