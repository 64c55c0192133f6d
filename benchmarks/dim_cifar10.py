"""Benchmark: DIM on CIFAR-10 for a wall-clock or epoch budget; kNN top-1, images/s, FLOP/s.

Usage:
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 30
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 0.5 --preset su-jianlin

Reports the kNN top-1 (k = 200, T = 0.1, on z, full test set, training split as
memory), the training throughput, the FLOPs of one training step per image
(counted with ``torch.utils.flop_counter``) and the fraction of this machine's
fp32 matmul throughput (measured here on a 2048^3 product) that the training
step reaches. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from data_root import (  # the benchmarks' --data-dir / $DIM_DATA_DIR
    add_data_dir_argument,
    require_data_dir,
)
from torch.utils.flop_counter import FlopCounterMode

from dim.config import PRESETS, TrainConfig
from dim.core.device import uses_bf16
from dim.train import build_model, train


def matmul_flops_per_s(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Matmul throughput of this machine (FLOP/s) on the CPU, in ``dtype``: the fastest of ``repeats`` products.

    The fastest, not the mean, so that a moment of load from another process does not lower the ceiling.
    """
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def training_flops_per_image(config: TrainConfig, channels: int = 3, image_size: int = 32) -> float:
    """FLOPs of one forward + backward pass of the objective, per training image (all its views)."""
    model = build_model(config, channels, image_size)
    images = torch.randn(config.views * config.batch_size, channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model.loss(model(images, views=config.views)).backward()
    return counter.get_total_flops() / config.batch_size


def parse_setting(text: str) -> tuple[str, object]:
    """``name=value`` -> (name, value as int, float or str): a TrainConfig field to override."""
    name, _, value = text.partition("=")
    for kind in (int, float):
        try:
            return name.replace("-", "_"), kind(value)
        except ValueError:
            pass
    return name.replace("-", "_"), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir_argument(parser, "holds cifar10/ (torchvision's layout or an image-folder tree)")
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    parser.add_argument("--epochs", type=int, default=1000, help="epoch budget (whichever ends first)")
    parser.add_argument("--preset", default=TrainConfig.preset, choices=list(PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=parse_setting,
                        help="override a TrainConfig field, e.g. --set views=2 --set augment=resized-crop-jitter-grey")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default=None, help="run directory (default runs/dim-cifar10-...)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.data_dir = require_data_dir(args.data_dir)

    config = TrainConfig(dataset="cifar10", data_dir=args.data_dir, out=args.out, preset=args.preset,
                         epochs=args.epochs, time_limit=args.minutes, device=args.device, threads=args.threads,
                         **dict(args.set)).resolved()
    flops = training_flops_per_image(config)
    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = uses_bf16(torch.device("cpu"), config.precision, training=True)  # the format the step trains in
    peak = matmul_flops_per_s(dtype=torch.bfloat16 if bf16 else torch.float32)
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    rows = result.rows
    images_per_s = sum(r["images_per_s"] * r["seconds"] for r in rows) / max(sum(r["seconds"] for r in rows), 1e-9)
    summary = {
        "preset": args.preset,
        "settings": dict(args.set),
        "precision": "bf16" if bf16 else "fp32",
        "knn_top1": result.metrics["knn_top1"],
        "epochs": result.metrics["epoch"],
        "steps": result.step,
        "train_images_per_s": images_per_s,
        "train_mflop_per_image": flops / 1e6,
        "train_gflop_per_s": images_per_s * flops / 1e9,
        "matmul_gflop_per_s": peak / 1e9,
        "fraction_of_matmul_peak": images_per_s * flops / peak,
        "wall_minutes": wall / 60,
        "run_dir": str(result.run_dir),
        "threads": torch.get_num_threads(),
    }
    print(f"kNN top-1 {summary['knn_top1']:.4f} after {summary['epochs']:.2f} epochs ({summary['wall_minutes']:.1f} min)")
    print(f"training: {images_per_s:.0f} images/s x {flops / 1e6:.0f} MFLOP/image = {summary['train_gflop_per_s']:.1f} "
          f"GFLOP/s, {100 * summary['fraction_of_matmul_peak']:.0f} % of the measured {summary['precision']} matmul "
          f"{peak / 1e9:.0f} GFLOP/s")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
