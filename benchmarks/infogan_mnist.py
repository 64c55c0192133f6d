"""Benchmark: InfoGAN on MNIST; categorical-code accuracy over seeds, iterations/s, wall time.

Usage:
    python benchmarks/infogan_mnist.py                              # 5 seeds x 5000 iterations, the best preset
    python benchmarks/infogan_mnist.py --preset paper               # the InfoGAN paper's objective
    python benchmarks/infogan_mnist.py --iterations 20 --seeds 1    # a smoke test of the script
    python benchmarks/infogan_mnist.py --speed --iterations 60      # iterations/s at batch 64 only
    python benchmarks/infogan_mnist.py --preset paper --lambda-invariance 1   # the paper plus the invariance term

Each seed trains the preset's objective (the paper's networks: 62 noise variables, a 10-way c1, two continuous
codes; Adam 2e-4 / 1e-3, beta1 0.5) into ``--out/seed<N>`` and scores c1 on the
10,000 test images (Hungarian matching, :func:`infogan.evaluate.evaluate`).
Targets: median c1 accuracy >= 97 % and minimum >= 95 % over 5 seeds, and
>= 3 iterations/s at batch 64 on the 2-core CPU. Which objectives meet them,
with the measured figures, is in ``benchmarks/RESULTS.md``.

On a busy machine torch's OpenMP threads spin-wait for each other and the
step can run several times slower with 2 threads than with 1: use ``--threads 1``
or ``OMP_WAIT_POLICY=PASSIVE`` there, and quote timings from a quiet machine.

``--speed`` times the training step alone (no files written), after a few
warm-up steps, and counts its FLOPs with ``torch.utils.flop_counter``. With
``--json`` the last line printed is a JSON list with one object per seed (or
one object for ``--speed``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from data_root import (  # the benchmarks' --data-dir / $DIM_DATA_DIR
    add_data_dir_argument,
    require_data_dir,
)
from torch.utils.flop_counter import FlopCounterMode

from dim.core.atomic import atomic_write
from dim.core.checkpoint import load_checkpoint
from dim.core.runs import default_run_dir
from infogan import TrainConfig, Trainer
from infogan.checkpoint import KINDS
from infogan.config import PRESETS
from infogan.evaluate import evaluate
from infogan.train import train

TARGET_MEDIAN, TARGET_MIN, TARGET_IT_PER_S = 0.97, 0.95, 3.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_speed(config: TrainConfig, warmup: int) -> dict:
    """Iterations/s and FLOPs of :meth:`Trainer.train_step` on MNIST (the run directory is a temporary folder)."""
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(replace(config, out=run_dir), progress=False)
        try:
            for _ in range(warmup):
                trainer.train_step()
            with FlopCounterMode(display=False) as counter:
                trainer.train_step()
            _sync(trainer.device)
            start = time.perf_counter()
            for _ in range(config.iterations):
                values = trainer.train_step()
            values.tolist()  # waits for the device
            seconds = time.perf_counter() - start
        finally:
            trainer.close()
    flops = counter.get_total_flops()
    return {
        "mode": "speed",
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "batch_size": config.batch_size,
        "iterations": config.iterations,
        "seconds": seconds,
        "it_per_s": config.iterations / seconds,
        "gflop_per_it": flops / 1e9,
        "gflop_per_s": flops * config.iterations / seconds / 1e9,
    }


def _number(value: float | None, width: int, decimals: int) -> str:
    """``value`` right-aligned in ``width``, or "-" for a seed trained by an earlier call (not timed here)."""
    return f"{value:>{width}.{decimals}f}" if value is not None else f"{'-':>{width}}"


def run_seed(config: TrainConfig, progress: bool) -> dict:
    """Train one seed, evaluate c1 on the test split and time both; pick up where an earlier call stopped.

    The row is saved as ``benchmark.json`` in the seed's run directory. A seed that
    already has one (for the same iterations and batch size) is read back, not
    retrained; a seed with only a checkpoint is resumed from it, and its
    ``it_per_s`` and ``wall_s`` then cover this call's share of the training alone.
    """
    run_dir = Path(config.out)
    saved = run_dir / "benchmark.json"
    if saved.exists():
        row = json.loads(saved.read_text())
        if (row["iterations"], row["batch_size"]) == (config.iterations, config.batch_size):
            return row
    start = time.perf_counter()
    resume = (run_dir / "checkpoint.pt").exists()
    fit = None
    if not resume or load_checkpoint(run_dir, KINDS, mmap=True)["step"] < config.iterations:
        fit = train(config, resume=resume, progress=progress)
    result = evaluate(run_dir, config.data_dir, device=config.device)
    row = {
        "seed": config.seed,
        "cat_accuracy": result["cat_accuracy"],
        "mapping": result["mapping"],
        "iterations": result["iterations"],
        "batch_size": config.batch_size,
        "it_per_s": fit.steps_per_s if fit is not None else None,
        "wall_s": time.perf_counter() - start if fit is not None else None,
        "run_dir": str(run_dir),
    }
    atomic_write(saved, lambda path: Path(path).write_text(json.dumps(row, indent=2)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir_argument(parser, "holds MNIST/raw")
    parser.add_argument("--iterations", type=int, default=5000,
                        help="training iterations per seed (or timed, with --speed)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128, or 64 with --speed")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds: FIRST .. FIRST+N-1")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="first seed (run two processes on disjoint seeds with the same --out, then "
                             "--seeds 5 alone to print the table from their saved rows)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 can be faster on a busy machine)")
    parser.add_argument("--out", default=None, help="folder for the runs (default runs/bench-infogan-mnist-TIME)")
    parser.add_argument("--separate-q", action="store_true", help="Q with its own trunk")
    parser.add_argument("--lambda-info", type=float, default=1.0, help="0 benchmarks the plain-GAN baseline")
    parser.add_argument("--preset", default=TrainConfig.preset, choices=list(PRESETS),
                        help="the objective: best (invariance and IIC terms) or paper")
    parser.add_argument("--lambda-invariance", type=float, default=None,
                        help="weight of the invariance term on warped fakes (default: the preset's)")
    parser.add_argument("--lambda-iic", type=float, default=None,
                        help="weight of the IIC term on real images and their warps (default: the preset's)")
    parser.add_argument("--speed", action="store_true", help="only time the training step")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing (--speed)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print a JSON list as the last line")
    args = parser.parse_args()
    args.data_dir = require_data_dir(args.data_dir)

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_size = args.batch_size or (64 if args.speed else 128)
    config = TrainConfig(dataset="mnist", data_dir=args.data_dir, iterations=args.iterations, batch_size=batch_size,
                         device=args.device, separate_q=args.separate_q, lambda_info=args.lambda_info,
                         preset=args.preset, lambda_invariance=args.lambda_invariance, lambda_iic=args.lambda_iic)
    if args.speed:
        row = measure_speed(config, args.warmup)
        verdict = "meets" if row["it_per_s"] >= TARGET_IT_PER_S else "misses"
        print(f"{row['device']} ({row['threads']} threads), batch {batch_size}: {row['it_per_s']:.2f} it/s "
              f"({1000 / row['it_per_s']:.0f} ms/it) over {row['iterations']} iterations; "
              f"{row['gflop_per_it']:.1f} GFLOP/it = {row['gflop_per_s']:.1f} GFLOP/s; "
              f"{verdict} the target of {TARGET_IT_PER_S:g} it/s")
        if args.json:
            print(json.dumps([row]))
        return

    root = Path(args.out) if args.out else default_run_dir("bench-infogan-mnist")
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows.append(run_seed(replace(config, seed=seed, out=str(root / f"seed{seed}")), not args.no_progress))
        row = rows[-1]
        print(f"seed {seed}: c1 accuracy {100 * row['cat_accuracy']:.2f}%, {_number(row['it_per_s'], 0, 2)} it/s, "
              f"{_number(row['wall_s'], 0, 0)} s", flush=True)

    accuracies = [row["cat_accuracy"] for row in rows]
    print(f"\nInfoGAN on MNIST: {args.iterations} iterations at batch {batch_size}, "
          f"separate_q={args.separate_q}, lambda_info={args.lambda_info:g}, "
          f"preset {config.preset}: lambda_invariance={config.lambda_invariance:g}, lambda_iic={config.lambda_iic:g}")
    print(f"{'seed':>4}  {'c1 accuracy':>11}  {'it/s':>6}  {'wall s':>7}")
    for row in rows:
        print(f"{row['seed']:>4}  {100 * row['cat_accuracy']:>10.2f}%  {_number(row['it_per_s'], 6, 2)}  "
              f"{_number(row['wall_s'], 7, 0)}")
    median, minimum = statistics.median(accuracies), min(accuracies)
    verdict = {True: "met", False: "missed"}
    print(f"median {100 * median:.2f}% (target >= {100 * TARGET_MEDIAN:.0f}%: {verdict[median >= TARGET_MEDIAN]}), "
          f"min {100 * minimum:.2f}% (target >= {100 * TARGET_MIN:.0f}%: {verdict[minimum >= TARGET_MIN]}), "
          f"total wall {sum(row['wall_s'] or 0 for row in rows):.0f} s (seeds evaluated from an earlier run count 0)")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
