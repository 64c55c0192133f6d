"""fp32 against bf16 autocast on this CPU: the training step, embedding, and kNN at parity.

Usage:
    python benchmarks/precision.py                                   # step and embedding timings
    python benchmarks/precision.py --model runs/dim-cifar10-... --data-dir DATA   # + kNN parity
    python benchmarks/precision.py --set views=2 --set augment=resized-crop-jitter-grey    # another recipe

Both formats are timed side by side in one process, alternating rounds of a
few steps (so a busy machine slows both alike), and the median round is
reported with the fp32 / bf16 ratio, the CPU's name and whether it has
AVX-512 BF16 or AMX. The training step is that of ``dim train`` for the chosen
preset (``--preset``, ``--set NAME=VALUE``); embedding is the encoder's forward
pass to z (:class:`dim.models.FeatureHead`). With ``--model``, the run's encoder
embeds its dataset's train and test splits in both formats and kNN top-1
(k = 200, T = 0.1) is reported for each: the accuracy check. Whether either
format stays stable over a whole run is a training question, answered by
``benchmarks/dim_cifar10.py --set precision=...`` (see ``benchmarks/RESULTS.md``).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from data_root import (  # the benchmarks' --data-dir / $DIM_DATA_DIR
    add_data_dir_argument,
    require_data_dir,
)
from dim_cifar10 import parse_setting  # the benchmarks' shared --set NAME=VALUE parser

from dim.augment import augment
from dim.checkpoint import load_features
from dim.config import PRESETS, TrainConfig
from dim.core.datasets import load_dataset
from dim.core.device import autocast, bf16_is_fast
from dim.core.images import normalize_images
from dim.core.probes import evaluate
from dim.models import Encoder, FeatureHead
from dim.train import build_model

FORMATS = ("fp32", "bf16")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def alternate(steps: dict[str, callable], rounds: int, per_round: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(rounds + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            if index:  # round 0 warms up
                times[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(values) for name, values in times.items()}


def training_steps(config: TrainConfig) -> dict[str, callable]:
    """One ``dim train`` step of ``config``'s objective per format, on a random CIFAR-sized batch."""
    images = torch.randint(0, 256, (config.batch_size, 3, 32, 32), dtype=torch.uint8)
    steps = {}
    for name in FORMATS:
        torch.manual_seed(0)
        model = build_model(config, 3, 32).to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)

        def step(model=model, optimizer=optimizer, name=name) -> None:
            batch = normalize_images(images)
            batch = torch.cat([augment(batch, config.augment) for _ in range(config.views)])
            with autocast(torch.device("cpu"), name):
                loss = model.loss(model(batch.contiguous(memory_format=torch.channels_last), views=config.views))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[name] = step
    return steps


def embedding_steps(config: TrainConfig, batch_size: int) -> dict[str, callable]:
    """The encoder's forward pass to z per format, on a random batch."""
    encoder = Encoder(config.arch, 3, 32, config.z_dim, stochastic=config.prior == "kl").eval()
    images = normalize_images(torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8))

    def forward(name: str) -> callable:
        head = FeatureHead(encoder, "z", name)
        return lambda: torch.inference_mode()(head)(images)

    return {name: forward(name) for name in FORMATS}


def knn_parity(run: str, data_dir: str) -> dict[str, float]:
    """kNN top-1 of a trained run's encoder with its features computed in each format."""
    extractor = load_features(run)
    config = json.loads(open(f"{run}/config.json").read())
    train = load_dataset(config["dataset"], "train", data_dir, progress=False)
    test = load_dataset(config["dataset"], "test", data_dir, progress=False)
    accuracy = {}
    for name in FORMATS:
        extractor.network.precision = name
        summary = evaluate(extractor, train.images, train.labels, test.images, test.labels, train.num_classes)
        accuracy[name] = summary["knn_top1"]
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=TrainConfig.preset, choices=list(PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=parse_setting)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--embed-batch", type=int, default=512)
    parser.add_argument("--model", help="a trained DIM run: also check kNN top-1 in both formats")
    add_data_dir_argument(parser, "with --model: root of the run's dataset")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(preset=args.preset, **dict(args.set)).resolved()

    step = alternate(training_steps(config), args.rounds, per_round=3)
    embed = alternate(embedding_steps(config, args.embed_batch), args.rounds, per_round=3)
    summary = {
        "cpu": cpu_name(),
        "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
        "amx": torch.cpu._is_amx_tile_supported(),
        "bf16_is_fast": bf16_is_fast(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "preset": args.preset,
        "settings": dict(args.set),
        "train_images_per_s": {name: config.batch_size / seconds for name, seconds in step.items()},
        "embed_images_per_s": {name: args.embed_batch / seconds for name, seconds in embed.items()},
    }
    summary["train_speedup_bf16"] = step["fp32"] / step["bf16"]
    summary["embed_speedup_bf16"] = embed["fp32"] / embed["bf16"]
    if args.model:
        summary["knn_top1"] = knn_parity(args.model, require_data_dir(args.data_dir))

    print(f"{summary['cpu']} ({summary['threads']} threads; AVX-512 BF16 {summary['avx512_bf16']}, "
          f"AMX {summary['amx']}), preset {args.preset} {dict(args.set) or ''}")
    print(f"{'':16s}{'fp32':>10s}{'bf16':>10s}{'bf16 / fp32':>14s}")
    for label, key, ratio in [("train images/s", "train_images_per_s", "train_speedup_bf16"),
                              ("embed images/s", "embed_images_per_s", "embed_speedup_bf16")]:
        values = summary[key]
        print(f"{label:16s}{values['fp32']:>10.0f}{values['bf16']:>10.0f}{summary[ratio]:>13.2f}x")
    if args.model:
        print(f"{'kNN top-1':16s}{summary['knn_top1']['fp32']:>10.4f}{summary['knn_top1']['bf16']:>10.4f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
