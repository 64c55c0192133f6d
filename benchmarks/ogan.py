"""Benchmark: O-GAN's encoding E(x) as features, side by side with InfoGAN's D trunk, DIM and raw pixels.

Usage:
    python benchmarks/ogan.py mnist --iterations 5000     # the GANs 5,000 iterations each; DIM for O-GAN's wall time
    python benchmarks/ogan.py cifar10 --minutes 30        # every model a 30-minute training budget
    python benchmarks/ogan.py mnist --iterations 20 --threads 1 --dim-minutes 0.1   # a smoke test of the script

Each model trains on the dataset's training split into ``--out/<model>`` and is
judged by the same weighted kNN (k = 200, T = 0.1, :func:`dim.core.probes.evaluate`)
on the test split, with the training split as memory:

* ``ogan``: ``infogan train --objective ogan``; the features are E(x) (``noise_dim`` values);
* ``infogan``: ``infogan train`` (the best preset); the features are D's 1024-d trunk;
* ``dim``: ``dim train`` (the best preset) for the wall time O-GAN took (or ``--dim-minutes``); its code z;
* ``pixels``: the images themselves, flattened and scaled to [-1, 1], no training.

Every trained model is loaded through the feature-loader registry
(:mod:`dim.core.registry`), as ``dim-search build`` loads it. With ``--minutes``
the GANs train in chunks of ``--chunk`` iterations until the budget is spent
(``infogan train`` has no time limit); with ``--iterations`` they train that
many. The O-GAN run also gets its sample grid (``samples/``) and reconstruction
grid (``reconstructions.png``), the pictures for the README and docs. A model
whose run directory already holds ``benchmark.json`` is read back, not
retrained. With ``--json`` the last line printed is a JSON list, one object per model.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from data_root import (  # the benchmarks' --data-dir / $DIM_DATA_DIR
    add_data_dir_argument,
    require_data_dir,
)

from dim.config import TrainConfig as DIMConfig
from dim.core.atomic import atomic_write
from dim.core.checkpoint import load_checkpoint
from dim.core.datasets import load_dataset
from dim.core.probes import evaluate, knn_classify
from dim.core.registry import load_feature_extractor
from dim.core.runs import default_run_dir
from dim.train import train as train_dim
from infogan import KINDS, TrainConfig, Trainer
from infogan.train import train as train_infogan

MODELS = ("ogan", "infogan", "dim", "pixels")


def train_gan(config: TrainConfig, minutes: float | None, chunk: int) -> float:
    """Train an InfoGAN or O-GAN run for ``config.iterations``, or for ``minutes`` in chunks; returns seconds."""
    start = time.perf_counter()
    if minutes is None:
        train_infogan(config)
        return time.perf_counter() - start
    trainer = Trainer(replace(config, iterations=chunk))
    try:
        while True:
            trainer.run()  # writes a checkpoint (and O-GAN's reconstructions) at the end of each chunk
            if time.perf_counter() - start >= 60 * minutes:
                break
            trainer.config = replace(trainer.config, iterations=trainer.step + chunk)
    finally:
        trainer.close()
    seconds = time.perf_counter() - start
    saved = Path(config.out) / "config.json"  # written for the first chunk: record the iterations trained
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "iterations": trainer.step}, indent=2,
                                sort_keys=True) + "\n")
    return seconds


def knn_of_run(run_dir: Path, train, test, device: str, data_dir: str) -> dict:
    """kNN top-1 of a run's features (whatever its kind) on ``test``, ``train`` as memory (at the model's input size)."""
    extractor = load_feature_extractor(run_dir, device)
    if train.images.shape[1:] != (extractor.channels, extractor.image_size, extractor.image_size):
        size = {"image_size": extractor.image_size, "channels": extractor.channels, "progress": False}
        train = load_dataset(train.name, "train", data_dir, **size)
        test = load_dataset(test.name, "test", data_dir, **size)
    summary = evaluate(extractor, train.images, train.labels, test.images, test.labels, train.num_classes)
    return {"features": extractor.name, "feature_dim": extractor.feature_dim, **summary}


def knn_of_pixels(train, test) -> dict:
    """kNN top-1 of the raw pixels, flattened and scaled to [-1, 1]."""
    def flat(images):
        return images.flatten(1).float() / 127.5 - 1

    result = knn_classify(flat(train.images), train.labels, flat(test.images), test.labels, train.num_classes)
    return {"features": "pixels", "feature_dim": train.images[0].numel(), "knn_top1": result.top1, "k": result.k}


def run_model(name: str, args: argparse.Namespace, root: Path, train, test, ogan_seconds: float | None) -> dict:
    """Train (unless done before) and judge one model; its row is saved as ``root/name/benchmark.json``."""
    run_dir = root / name
    saved = run_dir / "benchmark.json"
    if saved.exists():
        return json.loads(saved.read_text())
    seconds, steps = 0.0, None
    if name == "pixels":
        row = knn_of_pixels(train, test)
    else:
        if name in KINDS:  # the GANs: each model's name is its objective
            config = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, out=str(run_dir), device=args.device,
                                 iterations=args.iterations, objective=name, seed=args.seed)
            seconds = train_gan(config, args.minutes, args.chunk)
        else:
            minutes = args.dim_minutes or args.minutes or (ogan_seconds or 60) / 60
            config = DIMConfig(dataset=args.dataset, data_dir=args.data_dir, out=str(run_dir), device=args.device,
                               epochs=1000, time_limit=minutes, knn=False, seed=args.seed)
            result = train_dim(config, progress=True)
            seconds, steps = result.seconds, result.step
        row = knn_of_run(run_dir, train, test, args.device, args.data_dir)
    row = {"model": name, "dataset": args.dataset, "train_s": seconds, "steps": steps, **row}
    if name in KINDS:
        row["steps"] = int(load_checkpoint(run_dir, KINDS, mmap=True)["step"])
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(saved, lambda path: Path(path).write_text(json.dumps(row, indent=2)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a dataset name: mnist, cifar10, ...")
    add_data_dir_argument(parser, "root of the named datasets")
    parser.add_argument("--iterations", type=int, default=5000, help="GAN iterations (without --minutes)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget of every model instead of --iterations (the GANs in chunks)")
    parser.add_argument("--chunk", type=int, default=200, help="GAN iterations between budget checks (--minutes)")
    parser.add_argument("--dim-minutes", type=float, default=None,
                        help="DIM's budget (default: --minutes, else the wall time O-GAN took)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--out", default=None, help="folder for the runs (default runs/bench-ogan-DATASET-TIME)")
    parser.add_argument("--json", action="store_true", help="print a JSON list as the last line")
    args = parser.parse_args()
    args.data_dir = require_data_dir(args.data_dir)

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}: choose from {', '.join(MODELS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.out) if args.out else default_run_dir(f"bench-ogan-{args.dataset}")
    train = load_dataset(args.dataset, "train", args.data_dir, progress=False)  # at the dataset's own size
    test = load_dataset(args.dataset, "test", args.data_dir, progress=False)
    rows, ogan_seconds = [], None
    for name in sorted(models, key=MODELS.index):  # O-GAN first: DIM's default budget is its wall time
        row = run_model(name, args, root, train, test, ogan_seconds)
        ogan_seconds = row["train_s"] if name == "ogan" else ogan_seconds
        rows.append(row)
        print(f"{name}: kNN top-1 {100 * row['knn_top1']:.2f}% ({row['features']}, {row['feature_dim']}-d), "
              f"trained {row['train_s']:.0f} s", flush=True)

    print(f"\nkNN top-1 (k=200, T=0.1) on the {args.dataset} test split, training split as memory")
    print(f"{'model':<8}  {'features':<18}  {'dim':>5}  {'steps':>7}  {'train s':>8}  {'kNN top-1':>9}")
    for row in rows:
        steps = "-" if row["steps"] is None else str(row["steps"])
        print(f"{row['model']:<8}  {row['features']:<18}  {row['feature_dim']:>5}  {steps:>7}  "
              f"{row['train_s']:>8.0f}  {100 * row['knn_top1']:>8.2f}%")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
