"""Embedding throughput of ``dim-search build``: decode + preprocess + forward, in images/s.

Two workloads, each through :func:`dim.core.embedding.embed_images` (the code
``dim-search build`` runs):

* small: 32x32 images (generated PNGs, or a folder such as CIFAR-10's JPEG copy);
* photos: 500x375 JPEGs (generated, or a folder), resized to the model input.

Also reports the forward pass alone on in-memory uint8 batches, to tell
decoding cost from network cost, and the photos once more decoded the way
they were before reduced-scale JPEG decoding (every file at full size, then
resized: ``photos_exact``), to show what ``Image.draft`` buys. The speed does not depend on training, so
without ``--model`` a freshly initialised default DIM encoder (DCGAN-style,
32x32 RGB, z = 64) is used.

Targets on the 2-core CPU: >= 2,000 images/s for 32x32 images, and for 500x375
JPEGs with 2 workers.

Usage:
    python benchmarks/search_embed.py --device cpu
    python benchmarks/search_embed.py --small-dir DATA/cifar10/test --num-workers 0,1,2 --json
    python benchmarks/search_embed.py --num-small 2000 --num-photos 100      # a quick check
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dim.core.device import select_device
from dim.core.embedding import embed_batch, embed_images, eval_mode
from dim.core.features import FeatureExtractor
from dim.core.files import ImageFiles, default_num_workers, find_images
from dim.core.images import DECODE_ERRORS, describe_error, image_to_uint8, open_image
from dim.models import Encoder, feature_extractor
from retrieval.models import load_model


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


def forward_throughput(model: FeatureExtractor, batch_size: int, min_seconds: float) -> float:
    """Images/s of the forward pass alone on a random uint8 batch already in memory."""
    images = torch.randint(0, 256, (batch_size, model.channels, model.image_size, model.image_size), dtype=torch.uint8)
    with eval_mode(model):
        embed_batch(model, images)  # warm-up
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < min_seconds:
            embed_batch(model, images)
            runs += 1
        if model.device.type == "cuda":
            torch.cuda.synchronize()
    return runs * batch_size / (time.perf_counter() - start)


def embed_throughput(model: FeatureExtractor, files: ImageFiles, batch_size: int, num_workers: int) -> float:
    """Images/s of ``embed_images`` over ``files`` (after a one-batch warm-up)."""
    embed_images(model, files.subset(range(min(batch_size, len(files)))), batch_size, 0)
    start = time.perf_counter()
    result = embed_images(model, files, batch_size, num_workers)
    elapsed = time.perf_counter() - start
    if result.skipped:
        print(f"  ({len(result.skipped)} unreadable files skipped)")
    return len(files) / elapsed


class ExactFiles(ImageFiles):
    """:class:`ImageFiles` decoded at full size, as before reduced-scale JPEG decoding."""

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, image_to_uint8(open_image(self.path(index)), self.image_size, self.channels), None
        except DECODE_ERRORS as error:
            return index, None, describe_error(error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a DIM run / checkpoint or an InfoGAN checkpoint (default: untrained DIM)")
    parser.add_argument("--small-dir", help="folder of small images (default: generate --num-small 32x32 PNGs)")
    parser.add_argument("--photo-dir", help="folder of photos (default: generate --num-photos 500x375 JPEGs)")
    parser.add_argument("--num-small", type=int, default=20_000)
    parser.add_argument("--num-photos", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", default=None, help="comma-separated worker counts to try (default: build's)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto, ...")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="duration of the forward-only measurement")
    parser.add_argument("--json", action="store_true", help="print every number as one JSON object on the last line")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    model = load_model(args.model, device) if args.model else default_encoder().to(device)
    workers = [default_num_workers()] if args.num_workers is None else [int(n) for n in args.num_workers.split(",")]

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        small = find_images(args.small_dir)[: args.num_small] if args.small_dir else write_images(
            Path(scratch) / "small", args.num_small, (32, 32), ".png", seed=0
        )
        photos = find_images(args.photo_dir)[: args.num_photos] if args.photo_dir else write_images(
            Path(scratch) / "photos", args.num_photos, (500, 375), ".jpg", seed=1
        )
        print(f"model {model.name} ({model.image_size}x{model.image_size}, {model.feature_dim}-d) on {device}, "
              f"{torch.get_num_threads()} torch threads; {len(small)} small images and {len(photos)} photos "
              f"ready in {time.perf_counter() - start:.1f} s")
        report = {
            "model": model.name, "device": str(device), "torch_threads": torch.get_num_threads(),
            "batch_size": args.batch_size, "num_small": len(small), "num_photos": len(photos),
            "forward_only": forward_throughput(model, args.batch_size, args.min_seconds), "small": {}, "photos": {},
            "photos_exact": {},
        }
        print(f"forward only (uint8 batches in memory): {report['forward_only']:,.0f} images/s")
        for num_workers in workers:
            for name, paths in (("small", small), ("photos", photos)):
                if paths:
                    files = ImageFiles(paths, model.image_size, model.channels)
                    report[name][num_workers] = embed_throughput(model, files, args.batch_size, num_workers)
                    print(f"{name:>6}, {num_workers} workers: {report[name][num_workers]:,.0f} images/s")
            if photos:
                exact = ExactFiles(photos, model.image_size, model.channels)
                report["photos_exact"][num_workers] = embed_throughput(model, exact, args.batch_size, num_workers)
                print(f"photos decoded at full size, {num_workers} workers: "
                      f"{report['photos_exact'][num_workers]:,.0f} images/s")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
