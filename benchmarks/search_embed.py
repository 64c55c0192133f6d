"""Embedding throughput of ``dim-search build`` for photos and small images, side by side, against the ceiling.

Two workloads go through :func:`dim.core.embedding.embed_images`, the code
``dim-search build``, ``add``, ``dim embed`` and ``dim eval`` run:

* small: 32x32 images (generated PNGs, or a folder such as CIFAR-10's JPEG copy);
* photos: 500x375 JPEGs (generated, or a folder), resized to the model input.

Each is embedded with every ``--splits`` entry, ``TxW``: T torch threads and W
decoding workers. The default compares the default split of ``embed_images``
(:func:`dim.core.embedding.decoding_split`) with the split it replaced (torch's
default of one thread per core, one worker per core beyond the main process).
Photos decoded at full size (``photos_exact``: no ``Image.draft``, as before
reduced-scale JPEG decoding) run at the first split. The arms take turns, round
after round, so load from other processes falls on all of them alike; the median
of ``--rounds`` is reported.

The ceiling. On one core, in this process, the benchmark times decoding and
preprocessing one image of each workload (best of three passes over up to 300
files) and the forward pass per image on one torch thread. With ``cores`` cores
and nothing else to do, a workload cannot go faster than

    ceiling = cores / (decode_ms + forward_ms) * 1000 images/s,

so the table shows how far each measured throughput is from it, and the ratio of
photos to small images at each split. The speed does not depend on training, so
without ``--model`` a freshly initialised default DIM encoder (DCGAN-style,
32x32 RGB, z = 64) is used.

Usage:
    python benchmarks/search_embed.py --device cpu --json
    python benchmarks/search_embed.py --splits 1x2,2x1,2x2,1x1 --rounds 3
    python benchmarks/search_embed.py --small-dir DATA/cifar10/test --photo-dir ~/Pictures
    python benchmarks/search_embed.py --num-small 2000 --num-photos 200 --rounds 1     # a quick check
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dim.core.device import select_device
from dim.core.embedding import decoding_split, embed_batch, embed_images, eval_mode, torch_threads
from dim.core.features import FeatureExtractor
from dim.core.files import ImageFiles, available_cores, find_images
from dim.core.images import DECODE_ERRORS, describe_error, image_to_uint8, load_image, open_image
from dim.models import Encoder, feature_extractor
from retrieval.models import load_model

COST_SAMPLE = 300  # files timed one by one for the per-image decoding cost


def default_encoder() -> FeatureExtractor:
    """An untrained default DIM encoder wrapped as ``dim.load_features`` wraps a trained one."""
    return feature_extractor(Encoder())


def write_images(folder: Path, count: int, size: tuple[int, int], suffix: str, seed: int) -> list[Path]:
    """``count`` photo-like images: smooth random colour fields plus mild noise (compress like photos)."""
    rng = np.random.default_rng(seed)
    width, height = size
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
        pixels = np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i:06d}{suffix}"
        Image.fromarray(pixels).save(path, quality=90) if suffix == ".jpg" else Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


class ExactFiles(ImageFiles):
    """:class:`ImageFiles` decoded at full size, as before reduced-scale JPEG decoding."""

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, image_to_uint8(open_image(self.path(index)), self.image_size, self.channels), None
        except DECODE_ERRORS as error:
            return index, None, describe_error(error)


def forward_ms(model: FeatureExtractor, batch_size: int, min_seconds: float) -> float:
    """Milliseconds per image of the forward pass alone on one torch thread (a random uint8 batch in memory)."""
    images = torch.randint(0, 256, (batch_size, model.channels, model.image_size, model.image_size), dtype=torch.uint8)
    with eval_mode(model), torch_threads(1):
        embed_batch(model, images)  # warm-up
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < min_seconds:
            embed_batch(model, images)
            runs += 1
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return 1000 * elapsed / (runs * batch_size)


def decode_ms(paths: Sequence[Path], image_size: int, channels: int) -> float:
    """Milliseconds to decode and preprocess one file (``load_image``) on one core: best of 3 passes."""
    sample = list(paths[:COST_SAMPLE])
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for path in sample:
            load_image(path, image_size, channels)
        best = min(best, (time.perf_counter() - start) / len(sample))
    return 1000 * best


def embed_throughput(model: FeatureExtractor, files: ImageFiles, batch_size: int, threads: int, workers: int) -> float:
    """Images/s of ``embed_images`` over ``files`` with ``threads`` torch threads and ``workers`` decoding workers."""
    start = time.perf_counter()
    result = embed_images(model, files, batch_size, workers, threads=threads)
    elapsed = time.perf_counter() - start
    if result.skipped:
        print(f"  ({len(result.skipped)} unreadable files skipped)")
    return len(files) / elapsed


def parse_splits(text: str | None, cores: int) -> list[tuple[int, int]]:
    """``"1x2,2x1"`` -> ``[(1, 2), (2, 1)]``; ``None``: the default split, then the one it replaced."""
    if text is None:
        return list(dict.fromkeys([decoding_split(cores=cores), (cores, max(0, cores - 1))]))
    splits = []
    for item in text.split(","):
        threads, _, workers = item.strip().partition("x")
        splits.append((int(threads), int(workers)))
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a DIM run / checkpoint or an InfoGAN checkpoint (default: untrained DIM)")
    parser.add_argument("--small-dir", help="folder of small images (default: generate --num-small 32x32 PNGs)")
    parser.add_argument("--photo-dir", help="folder of photos (default: generate --num-photos 500x375 JPEGs)")
    parser.add_argument("--num-small", type=int, default=10_000)
    parser.add_argument("--num-photos", type=int, default=1_500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--splits", default=None,
                        help="comma-separated TxW: T torch threads, W decoding workers (default: the default split "
                             "of embed_images, then torch's threads with one worker per core beyond the main process)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all arms in turn; the median is reported")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto, ...")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="duration of the forward-only measurement")
    parser.add_argument("--json", action="store_true", help="print every number as one JSON object on the last line")
    args = parser.parse_args()
    device = select_device(args.device)
    model = load_model(args.model, device) if args.model else default_encoder().to(device)
    cores = available_cores()
    splits = parse_splits(args.splits, cores)

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        small = find_images(args.small_dir)[: args.num_small] if args.small_dir else write_images(
            Path(scratch) / "small", args.num_small, (32, 32), ".png", seed=0
        )
        photos = find_images(args.photo_dir)[: args.num_photos] if args.photo_dir else write_images(
            Path(scratch) / "photos", args.num_photos, (500, 375), ".jpg", seed=1
        )
        photo_kb = np.mean([path.stat().st_size for path in photos[:COST_SAMPLE]]) / 1000
        print(f"model {model.name} ({model.image_size}x{model.image_size}, {model.feature_dim}-d) on {device}, "
              f"{cores} cores; {len(small)} small images and {len(photos)} photos ({photo_kb:.0f} KB on average) "
              f"ready in {time.perf_counter() - start:.1f} s", flush=True)

        size, channels = model.image_size, model.channels
        costs = {"forward": forward_ms(model, args.batch_size, args.min_seconds),
                 "small": decode_ms(small, size, channels), "photos": decode_ms(photos, size, channels)}
        ceilings = {name: 1000 * cores / (costs[name] + costs["forward"]) for name in ("small", "photos")}
        print(f"one core: forward {costs['forward']:.3f} ms/image (1 torch thread); decode + preprocess "
              f"{costs['small']:.3f} ms/small image, {costs['photos']:.3f} ms/photo; ceiling on {cores} cores "
              f"{ceilings['small']:,.0f} small images/s, {ceilings['photos']:,.0f} photos/s", flush=True)

        arms = [(name, threads, workers) for threads, workers in splits for name in ("small", "photos")]
        arms.append(("photos_exact", *splits[0]))
        files = {"small": ImageFiles(small, size, channels), "photos": ImageFiles(photos, size, channels),
                 "photos_exact": ExactFiles(photos, size, channels)}
        embed_images(model, files["small"].subset(range(min(args.batch_size, len(small)))), args.batch_size, 0)
        measured: dict[tuple[str, int, int], list[float]] = {arm: [] for arm in arms}
        for round_number in range(1, args.rounds + 1):
            for arm in arms:
                name, threads, workers = arm
                measured[arm].append(embed_throughput(model, files[name], args.batch_size, threads, workers))
                print(f"round {round_number}: {name}, {threads} threads x {workers} workers: "
                      f"{measured[arm][-1]:,.0f} images/s", flush=True)

    medians = {arm: statistics.median(values) for arm, values in measured.items()}
    print(f"\n{'workload':<13} {'threads x workers':>17} {'images/s':>9} {'ceiling':>8} {'of ceiling':>10}")
    for (name, threads, workers), value in medians.items():
        ceiling = ceilings["small" if name == "small" else "photos"]
        print(f"{name:<13} {f'{threads} x {workers}':>17} {value:>9,.0f} {ceiling:>8,.0f} {value / ceiling:>10.0%}")
    ratios = {f"{threads}x{workers}": medians[("photos", threads, workers)] / medians[("small", threads, workers)]
              for threads, workers in splits}
    print("photos / small images: " + ", ".join(f"{ratio:.2f} at {split}" for split, ratio in ratios.items())
          + f" (ceilings: {ceilings['photos'] / ceilings['small']:.2f})")
    if args.json:
        print(json.dumps({
            "model": model.name, "device": str(device), "cores": cores, "batch_size": args.batch_size,
            "num_small": len(small), "num_photos": len(photos), "photo_kb": photo_kb, "ms_per_image": costs,
            "ceilings": ceilings, "ratios": ratios,
            "images_per_s": [{"workload": name, "threads": threads, "workers": workers, "median": medians[arm],
                              "rounds": measured[arm]} for arm in arms for name, threads, workers in [arm]],
        }))


if __name__ == "__main__":
    main()
