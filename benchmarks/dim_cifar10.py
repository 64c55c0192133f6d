"""Benchmark: DIM on CIFAR-10 next to its baselines for the same wall-clock budget; kNN top-1, precision@10, images/s.

Usage:
    # the 10-minute screen of every arm, one torch thread each, two arms at a time
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 10 --threads 1 --parallel 2
    # the 30-minute confirmation of the default (the best preset) with 2 threads
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 30 --threads 2 --arms dim
    # (either with OMP_WAIT_POLICY=PASSIVE in front where benchmarks/profile_step.py finds it faster)
    # where the step's time goes, fp32 against bf16, batch sizes, OMP_WAIT_POLICY (no data needed)
    python benchmarks/profile_step.py --threads 1 --batch-size 128 256 512
    python benchmarks/profile_step.py --threads 2 --batch-size 128 256 512
    # screen a candidate recipe against the default: two DIM runs side by side, one thread each
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 10 --threads 1 --arms dim --out runs/screen-a
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 10 --threads 1 --arms dim --out runs/screen-b \\
        --set local_maps=local+conv
    # a smoke test of every arm (any small image-folder tree DATA/cifar10/{train,test}/<class>/*)
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 0.2 --threads 1 --parallel 2

Arms (``--arms``, a comma-separated subset; default all), each given the same
``--minutes`` of training steps (and at most ``--epochs``) and the same
encoder (the DCGAN encoder of the preset, ``--set arch=...`` for another):

* ``dim``: ``dim train`` with ``--preset`` and the ``--set`` overrides; judged on z and fc;
* ``random``: the same encoder at its initialisation (seeded as ``dim`` is), no training; z and fc;
* ``pixels``: the images themselves, flattened and scaled to [-1, 1];
* ``supervised``: the same encoder trained *with* labels (cross-entropy on a
  linear classifier over fc, the preset's augmentation, Adam, cosine rate):
  the ceiling of this network at this budget; fc only (its code head gets no
  gradient), plus the classifier's own test accuracy;
* ``simclr``: lightly's SimCLR (``NTXentLoss``, ``SimCLRProjectionHead``,
  ``SimCLRTransform``, SGD as in lightly's CIFAR-10 benchmark) on the same
  encoder, judged on z and fc, both before the projection head
  (``benchmarks/peers.py``; needs ``pip install 'dim-toolkit[benchmark]'``).

Every judged feature gets the same protocol (:func:`dim.core.probes.judge_features`):
weighted kNN top-1 (k = 200, T = 0.1) of the full test split with the whole
training split as memory, and precision@10, the share of each test image's 10
nearest training images (cosine, exact search) that are of its class, which is
what ``benchmarks/search_quality.py`` measures through a flat ``dim-search``
index. Features are embedded as ``dim-search`` embeds them (``precision``
``auto``: bf16 on CPUs with fast bf16). images/s counts source images per
second of training steps (a SimCLR step encodes two views of each); DIM's
row also gives the FLOPs of one training step per image (counted with
``torch.utils.flop_counter``) and the share of this machine's 2048^3 fp32 and
bf16 matmul throughput that its step reaches.

Arms run one after the other in this process, or with ``--parallel N`` each in
its own process (``OMP_NUM_THREADS`` set to ``--threads``), N at a time, with
its log in ``OUT/<arm>.log``. Each arm leaves ``OUT/<arm>.json``; DIM's run
directory is ``OUT/dim``. ``--set NAME=VALUE`` overrides a
:class:`dim.config.TrainConfig` field for every arm it applies to (``batch_size``,
``augment``, ``precision`` and the architecture also for ``supervised``;
``batch_size`` and the architecture for ``simclr``). The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from data_root import (  # the benchmarks' --data-dir / $DIM_DATA_DIR
    add_data_dir_argument,
    require_data_dir,
)
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from dim.checkpoint import load_run
from dim.config import PRESETS, TrainConfig
from dim.core.datasets import load_dataset
from dim.core.device import seed_everything, select_device
from dim.core.images import normalize_images
from dim.core.memory import ImageDataset
from dim.core.probes import extract_features, judge_features
from dim.core.runs import default_run_dir
from dim.models import Encoder, feature_extractor
from dim.train import build_model, train

try:
    import faiss
except ImportError:  # the kNN then searches with torch, whose threads --threads sets
    faiss = None

ARMS = ("dim", "random", "pixels", "supervised", "simclr")
PRECISION_AT = 10  # precision@k of the retrieval check


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


def parse_arms(text: str) -> list[str]:
    """``dim,pixels`` -> the arms in :data:`ARMS` order (``ArgumentTypeError`` naming the valid ones)."""
    arms = [arm.strip() for arm in text.split(",") if arm.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or not arms:
        raise argparse.ArgumentTypeError(f"unknown arms {unknown or text!r}: choose from {', '.join(ARMS)}")
    return sorted(set(arms), key=ARMS.index)


def judge(train_features: Tensor, train: ImageDataset, test_features: Tensor, test: ImageDataset) -> dict[str, Any]:
    """kNN top-1 (k = 200, T = 0.1) and precision@10 of test features against train features (``(N, F)``, ``(Q, F)``)."""
    summary, knn = judge_features(train_features, train.labels, test_features, test.labels, train.num_classes)
    found = train.labels[knn.neighbours[:, :PRECISION_AT]]  # (Q, 10) classes of the nearest training images
    precision = (found == test.labels[:, None]).float().mean().item()
    return {"knn_top1": summary["knn_top1"], f"precision_at_{PRECISION_AT}": precision,
            "feature_dim": train_features.shape[1]}


def judge_encoder(
    encoder: Encoder, features: tuple[str, ...], precision: str, train: ImageDataset, test: ImageDataset
) -> dict[str, dict[str, Any]]:
    """:func:`judge` of each of an encoder's ``features``, embedded as ``dim-search`` embeds them."""
    judged = {}
    for feature in features:
        extractor = feature_extractor(encoder, feature, precision)  # eval mode, channels-last
        judged[feature] = judge(extract_features(extractor, train.images), train,
                                extract_features(extractor, test.images), test)
    return judged


def run_dim(config: TrainConfig, train_set: ImageDataset, test_set: ImageDataset) -> dict[str, Any]:
    """Train ``dim train``'s run of ``config`` and judge its z and fc; with the step's FLOPs and matmul shares."""
    flops = training_flops_per_image(config, train_set.channels, train_set.image_size)
    peaks = {name: matmul_flops_per_s(dtype=dtype) for name, dtype in (("fp32", torch.float32),
                                                                      ("bf16", torch.bfloat16))}
    result = train(config)
    images_per_s = result.steps * config.batch_size / max(result.seconds, 1e-9)
    encoder = load_run(result.run_dir).model.encoder
    return {
        "images_per_s": images_per_s, "epochs": result.metrics["epoch"], "steps": result.step,
        "train_seconds": result.seconds, "run_dir": str(result.run_dir),
        "features": judge_encoder(encoder, ("z", "fc"), config.precision, train_set, test_set),
        "train_mflop_per_image": flops / 1e6, "train_gflop_per_s": images_per_s * flops / 1e9,
        **{f"{name}_matmul_gflop_per_s": peak / 1e9 for name, peak in peaks.items()},
        **{f"share_of_{name}_matmul": images_per_s * flops / peak for name, peak in peaks.items()},
    }


def run_arm(arm: str, args: argparse.Namespace, config: TrainConfig, root: Path,
            train_set: ImageDataset, test_set: ImageDataset) -> dict[str, Any]:
    """Train (where the arm trains) and judge one arm; its row, also written to ``root/<arm>.json``."""
    device = select_device(config.device)
    if arm == "dim":
        row = run_dim(config, train_set, test_set)
    elif arm == "random":
        seed_everything(config.seed)  # the encoder ``dim`` starts from
        encoder = build_model(config, train_set.channels, train_set.image_size).encoder.to(device)
        row = {"features": judge_encoder(encoder, ("z", "fc"), config.precision, train_set, test_set)}
    elif arm == "pixels":
        pixels = {"pixels": judge(normalize_images(train_set.images).flatten(1), train_set,
                                  normalize_images(test_set.images).flatten(1), test_set)}
        row = {"features": pixels}
    else:
        import peers  # it imports lightly, which takes seconds: only for the arms that need it

        budget = peers.Budget(args.minutes, args.epochs)
        if arm == "supervised":
            peer = peers.train_supervised(config, train_set, test_set, budget, device)
        else:
            peer = peers.train_simclr(config, train_set, budget, device)
        row = {"images_per_s": peer.steps * config.batch_size / max(peer.seconds, 1e-9), "epochs": peer.epochs,
               "steps": peer.steps, "train_seconds": peer.seconds, **peer.extra,
               "features": judge_encoder(peer.encoder, peer.features, config.precision, train_set, test_set)}
    row = {"arm": arm, **row}
    (root / f"{arm}.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def run_in_processes(arms: list[str], args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """Each arm in its own process of this script, ``args.parallel`` at a time; their rows in ``arms`` order."""
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)  # torch's and faiss's OpenMP pools alike
    pending, running = list(arms), {}
    while pending or running:
        while pending and len(running) < args.parallel:
            arm = pending.pop(0)
            command = [sys.executable, __file__, *sys.argv[1:], "--arms", arm, "--parallel", "1", "--out", str(root)]
            with open(root / f"{arm}.log", "w") as log:  # the process keeps its own copy of the file
                running[arm] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            print(f"{arm}: started, log {root / f'{arm}.log'}", flush=True)
        time.sleep(1.0)
        for arm, process in list(running.items()):
            if process.poll() is not None:
                del running[arm]
                print(f"{arm}: exit status {process.returncode}", flush=True)
    missing = [arm for arm in arms if not (root / f"{arm}.json").exists()]
    if missing:
        raise SystemExit(f"arms {missing} failed: see their logs in {root}")
    return [json.loads((root / f"{arm}.json").read_text()) for arm in arms]


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per judged feature of each arm."""
    def number(value: float | None, width: int, form: str) -> str:
        return format("-" if value is None else format(value, form), f">{width}")

    print(f"\n{'arm':<11} {'feature':<7} {'dim':>5} {'images/s':>9} {'epochs':>7} {'kNN top-1':>10} "
          f"{'prec@10':>8}  notes")
    for row in rows:
        notes = []
        if "test_top1" in row:
            notes.append(f"classifier test top-1 {100 * row['test_top1']:.2f} %")
        if "train_mflop_per_image" in row:
            notes.append(f"{row['train_mflop_per_image']:.0f} MFLOP/image, {row['train_gflop_per_s']:.1f} GFLOP/s = "
                         f"{100 * row['share_of_fp32_matmul']:.0f} % of fp32 / "
                         f"{100 * row['share_of_bf16_matmul']:.0f} % of bf16 matmul")
        for feature, judged in row["features"].items():
            print(f"{row['arm']:<11} {feature:<7} {judged['feature_dim']:>5} {number(row.get('images_per_s'), 9, '.0f')} "
                  f"{number(row.get('epochs'), 7, '.2f')} {100 * judged['knn_top1']:>9.2f}% "
                  f"{100 * judged[f'precision_at_{PRECISION_AT}']:>7.2f}%  {'; '.join(notes)}")
            notes = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir_argument(parser, "holds cifar10/ (torchvision's layout or an image-folder tree)")
    parser.add_argument("--arms", type=parse_arms, default=list(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget of every trained arm")
    parser.add_argument("--epochs", type=int, default=1000, help="epoch budget (whichever ends first)")
    parser.add_argument("--preset", default=TrainConfig.preset, choices=list(PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=parse_setting,
                        help="override a TrainConfig field, e.g. --set views=2 --set augment=resized-crop-jitter-grey")
    parser.add_argument("--threads", type=int, default=0, help="torch (and faiss) CPU threads (0: their default)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="arms at a time, each in its own process (1: one after the other, in this process)")
    parser.add_argument("--out", default=None, help="folder of the arms' results (default runs/bench-dim-cifar10-...)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.data_dir = require_data_dir(args.data_dir)
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    if "simclr" in args.arms:
        import peers

        peers.require_lightly()  # before any arm spends its budget

    root = Path(args.out) if args.out else default_run_dir("bench-dim-cifar10")
    root.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(dataset="cifar10", data_dir=args.data_dir, out=str(root / "dim"), preset=args.preset,
                         epochs=args.epochs, time_limit=args.minutes, device=args.device, threads=args.threads,
                         **dict(args.set)).resolved()
    if args.parallel > 1 and len(args.arms) > 1:
        rows = run_in_processes(args.arms, args, root)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
            if faiss is not None:
                faiss.omp_set_num_threads(args.threads)
        train_set = load_dataset("cifar10", "train", args.data_dir, progress=False)
        test_set = load_dataset("cifar10", "test", args.data_dir, progress=False)
        rows = []
        for arm in args.arms:
            rows.append(run_arm(arm, args, config, root, train_set, test_set))
            print(f"{arm}: " + ", ".join(f"{feature} kNN top-1 {100 * judged['knn_top1']:.2f} %"
                                         for feature, judged in rows[-1]["features"].items()), flush=True)

    print_table(rows)
    summary = {"minutes": args.minutes, "threads": args.threads, "preset": args.preset, "settings": dict(args.set),
               "precision": config.precision, "out": str(root), "arms": rows}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
