"""MI estimators on the correlated-Gaussian staircase (Poole et al. 2019; Song & Ermon, SMILE, 2020).

x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps, so I(x; y) = -d/2 log(1 - rho^2).
The true MI steps up through 2, 4, 6, 8, 10 nats while one critic per
(bound, critic) pair keeps training; the estimate at each level is the mean of
the per-batch estimates over the last quarter of that level's steps.

    python benchmarks/mi_gaussian.py               # full staircase, table + plot
    python benchmarks/mi_gaussian.py --quick --json  # levels 2 and 4 only, a quick check
    # the separable critic as dim.mi.estimate_mi builds it (scores over sqrt(E)), at its learning rate
    python benchmarks/mi_gaussian.py --critics separable --bounds jsd --scaled-separable --lr 3e-4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from dim.mi import BOUNDS as MI_BOUNDS
from dim.mi import AllPairsNegatives, MIEstimator, make_bound, make_critic
from dim.mi.estimate import build_critic

# Poole et al.'s separable critic (32-d embeddings of 256-wide projections); a concat critic with one
# hidden layer of 512: a concat critic costs B * B * hidden per layer, and one wide layer was both cheaper
# and more accurate here than two of 256 (benchmarks/RESULTS.md).
CRITIC_OPTIONS = {"separable": {"hidden_dim": 256, "embed_dim": 32}, "concat": {"hidden_dim": 512, "num_layers": 1}}
CRITICS = list(CRITIC_OPTIONS)  # rows of the table and the figure
BOUNDS = list(MI_BOUNDS)  # columns: every bound of dim.mi
# Targets: (bound, true MI) -> allowed absolute error of the estimate in nats.
TOLERANCE = {("jsd", 2): 0.3, ("jsd", 4): 0.3, ("infonce", 2): 0.3}
TOLERANCE.update({(b, mi): 0.5 for b in ("dv", "nwj") for mi in (2, 4, 6)})


def rho_for(mi: float, dim: int) -> float:
    """The correlation that gives I(x; y) = mi nats in ``dim`` dimensions."""
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))


def run_staircase(bound: str, critic_kind: str, levels: list[float], steps: int, args) -> tuple[list[dict], list[float]]:
    torch.manual_seed(args.seed)
    options = CRITIC_OPTIONS[critic_kind]
    if critic_kind == "separable" and args.scaled_separable:
        critic = build_critic(critic_kind, args.dim, args.dim, options)  # estimate_mi's: scores over sqrt(E)
    else:
        critic = make_critic(critic_kind, "global", args.dim, args.dim, **options)
    estimator = MIEstimator(critic, AllPairsNegatives(), make_bound(bound))
    optimizer = torch.optim.Adam(estimator.parameters(), lr=args.lr)
    rows, trace = [], []
    for true_mi in levels:
        rho = rho_for(true_mi, args.dim)
        estimates = torch.empty(steps)
        for step in range(steps):
            x = torch.randn(args.batch_size, args.dim)
            y = rho * x + math.sqrt(1 - rho**2) * torch.randn(args.batch_size, args.dim)
            loss, mi = estimator(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            estimates[step] = mi
        trace += estimates.tolist()
        estimate = estimates[-max(1, steps // 4) :].mean().item()
        rows.append({"bound": bound, "critic": critic_kind, "true_mi": true_mi, "estimate": round(estimate, 4)})
    return rows, trace


def within_target(row: dict) -> str:
    tolerance = TOLERANCE.get((row["bound"], int(row["true_mi"])))
    if row["bound"] == "infonce" and row["estimate"] > math.log(64) + 1e-6:
        return "FAIL (> log B)"
    if tolerance is None:
        return "-"
    return "ok" if abs(row["estimate"] - row["true_mi"]) <= tolerance else f"MISS (±{tolerance})"


def save_plot(traces: dict, levels: list[float], steps: int, path: Path, batch_size: int) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(CRITICS), len(BOUNDS), figsize=(4 * len(BOUNDS), 3.2 * len(CRITICS)), sharey=True)
    truth = torch.tensor(levels).repeat_interleave(steps)
    for row, critic_kind in enumerate(CRITICS):
        for col, bound in enumerate(BOUNDS):
            ax = axes[row][col]
            trace = torch.tensor(traces[(bound, critic_kind)])
            smooth = torch.nn.functional.avg_pool1d(trace.view(1, 1, -1), 51, 1, 25, count_include_pad=False).view(-1)
            ax.plot(trace, color="tab:blue", alpha=0.25, linewidth=0.5)
            ax.plot(smooth, color="tab:blue", linewidth=1.2, label="estimate")
            ax.plot(truth, color="black", linewidth=1.5, label="true MI")
            if bound == "infonce":
                ax.axhline(math.log(batch_size), color="tab:red", linestyle="--", linewidth=1, label="log B")
            ax.set_title(f"{bound}, {critic_kind} critic")
            ax.set_ylim(-1, max(levels) + 2)
            ax.set_xlabel("step")
            if col == 0:
                ax.set_ylabel("nats")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="levels 2 and 4 only, fewer steps (under a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON list as the last line")
    parser.add_argument("--steps", type=int, default=None, help="steps per level (default 4000, --quick 1200)")
    parser.add_argument("--levels", type=float, nargs="+", default=None, help="true MI levels in nats")
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 5e-4, --quick 1e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path(__file__).with_name("mi_gaussian.png"))
    parser.add_argument("--critics", nargs="+", choices=CRITICS, default=CRITICS, help="rows (default: all)")
    parser.add_argument("--bounds", nargs="+", choices=BOUNDS, default=BOUNDS, help="columns (default: all)")
    parser.add_argument("--scaled-separable", action="store_true",
                        help="the separable critic as dim.mi.estimate_mi builds it: dot products over sqrt(embed_dim)")
    args = parser.parse_args()
    levels = args.levels or ([2.0, 4.0] if args.quick else [2.0, 4.0, 6.0, 8.0, 10.0])
    steps = args.steps or (1200 if args.quick else 4000)
    args.lr = args.lr or (1e-3 if args.quick else 5e-4)

    rows, traces = [], {}
    started = time.perf_counter()
    for critic_kind in args.critics:
        for bound in args.bounds:
            t0 = time.perf_counter()
            result, trace = run_staircase(bound, critic_kind, levels, steps, args)
            rows += result
            traces[(bound, critic_kind)] = trace
            print(f"  {bound:8s} {critic_kind:9s} {time.perf_counter() - t0:6.1f}s", file=sys.stderr)

    print(f"\nd={args.dim}, batch {args.batch_size}, {steps} steps per level, lr {args.lr}, "
          f"{time.perf_counter() - started:.0f}s in all; estimate = mean over the last {max(1, steps // 4)} steps")
    print(f"{'bound':10s}{'critic':11s}" + "".join(f"{f'I={lv:g}':>9s}" for lv in levels) + "   target")
    for critic_kind in args.critics:
        for bound in args.bounds:
            mine = [r for r in rows if r["bound"] == bound and r["critic"] == critic_kind]
            verdicts = {within_target(r) for r in mine} - {"-"}
            verdict = "ok" if verdicts == {"ok"} else ", ".join(sorted(v for v in verdicts if v != "ok")) or "-"
            print(f"{bound:10s}{critic_kind:11s}" + "".join(f"{r['estimate']:9.2f}" for r in mine) + f"   {verdict}")
    full = list(args.critics) == list(CRITICS) and list(args.bounds) == list(BOUNDS)  # the plot shows every pair
    if not args.quick and full and save_plot(traces, levels, steps, args.plot, args.batch_size):
        print(f"plot: {args.plot}")
    elif not args.quick and full:
        print("plot skipped: pip install matplotlib (or pip install -e '.[plots]')")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
