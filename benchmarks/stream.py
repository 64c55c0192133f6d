"""Benchmark: DIM training streamed from image files, against training in memory, and what a streamed run holds in RAM.

Usage:
    python benchmarks/stream.py throughput --data-dir DATA                    # CIFAR-10's JPEGs at 32 px
    python benchmarks/stream.py memory --work /tmp/stream-bench               # 200,000 generated JPEGs at 96 px
    python benchmarks/stream.py memory --work /tmp/s --images 2000 --steps 5   # a quick check

``throughput`` trains ``dim train``'s default (best) preset on an image folder
(default: the CIFAR-10 image-folder copy under ``--data-dir``, 50,000 32x32
JPEGs) for ``--steps`` optimiser steps twice: with the training split decoded
into memory (``--no-stream``) and streamed from its files (``--stream``, the
toolkit's default ``--num-workers`` unless given). Images/s count the training
steps only (:attr:`dim.core.runs.TrainResult.seconds`), not the decoding of the
in-memory arm up front. Target: streamed at least 80 % of in memory.

``memory`` writes ``--images`` JPEGs (default 200,000 scenes of ``shapes``,
128x96, in three class folders; once, into ``--work``), then trains streamed at
``--image-size`` (default 96) for ``--steps`` steps with the kNN check on its
subsets, while a thread samples every 0.2 s the memory of the training process
and its DataLoader workers: the sum of their PSS (proportional set size: a page
shared by n processes counts 1/n in each, so the copy-on-write pages the forked
workers share are not counted twice) and the sum of their RSS (which counts
them in every process: an upper bound). It also prints what the same split
would take decoded in memory. Target: the peak PSS sum under 4 GB.

The last line with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch
from data_root import (  # the benchmarks' --data-dir / $DIM_DATA_DIR
    add_data_dir_argument,
    require_data_dir,
)
from PIL import Image
from torch import Tensor

from dim.config import TrainConfig
from dim.core.datasets import image_files
from dim.core.shapes import make_shapes
from dim.train import train

CLASSES = ("circle", "square", "triangle")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux ``/proc``)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                todo += [int(child) for child in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
        except OSError:  # the process ended meanwhile
            continue
    return pids


def memory_of(pids: list[int]) -> tuple[int, int]:
    """Summed PSS and RSS of ``pids`` in bytes (``/proc/PID/smaps_rollup``)."""
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return pss, rss


class MemorySampler(threading.Thread):
    """Samples :func:`memory_of` this process's tree every ``interval`` seconds and keeps the peaks."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak_pss, self.peak_rss, self.peak_processes = interval, 0, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            pids = process_tree(os.getpid())
            pss, rss = memory_of(pids)
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.peak_processes = max(self.peak_processes, len(pids))

    def stop(self) -> None:
        self.done.set()
        self.join()


def write_folder(root: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    """``count`` JPEG shapes scenes of ``size`` (w, h) in ``root/<class>/``, in chunks, unless already there."""
    marker = root / f".complete-{count}"
    if marker.exists():
        return
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    chunk = 2000

    def save(item: tuple[int, Tensor, int]) -> None:
        number, image, label = item
        picture = Image.fromarray(image.permute(1, 2, 0).numpy()).resize(size, Image.Resampling.BILINEAR)
        picture.save(root / CLASSES[label] / f"{number:07d}.jpg", quality=85)

    with ThreadPoolExecutor(2) as pool:
        for start in range(0, count, chunk):
            images, labels = make_shapes(min(chunk, count - start), image_size=max(size), seed=seed + start)
            list(pool.map(save, [(start + i, images[i], int(labels[i])) for i in range(len(images))]))
            print(f"\rwrote {start + len(images):,} / {count:,} images", end="", flush=True)
    print()
    marker.touch()


def throughput(args: argparse.Namespace) -> dict:
    source = args.folder or str(Path(require_data_dir(args.data_dir)) / "cifar10")
    base = TrainConfig(dataset=source if args.folder else "cifar10", data_dir=args.data_dir, max_steps=args.steps,
                       epochs=1000, knn=False, threads=args.threads, num_workers=args.num_workers, seed=0)
    rows = {}
    for arm, stream in (("memory", False), ("stream", True)):
        out = Path(args.work) / f"throughput-{arm}"
        if out.exists():
            raise SystemExit(f"{out} exists: remove it or pick another --work")
        result = train(replace(base, out=str(out), stream=stream), progress=True)
        batch_size = base.resolved().batch_size
        rows[arm] = {"steps": result.steps, "seconds": result.seconds,
                     "images_per_s": result.steps * batch_size / result.seconds}
        print(f"{arm}: {rows[arm]['images_per_s']:,.0f} images/s over {result.steps} steps ({result.seconds:.1f} s)")
    ratio = rows["stream"]["images_per_s"] / rows["memory"]["images_per_s"]
    print(f"\nstreamed / in memory: {100 * ratio:.1f} % (target >= 80 %), dataset {base.dataset}, "
          f"{torch.get_num_threads()} torch threads, num_workers {args.num_workers if args.num_workers is not None else 'default'}")
    return {"part": "throughput", "dataset": base.dataset, "arms": rows, "ratio": ratio}


def memory(args: argparse.Namespace) -> dict:
    folder = Path(args.work) / f"shapes-{args.images}"
    started = time.perf_counter()
    write_folder(folder, args.images, (128, 96))
    print(f"folder ready in {time.perf_counter() - started:.0f} s")
    files = image_files(str(folder), "train", image_size=args.image_size)
    out = Path(args.work) / f"memory-run-{args.image_size}px"
    if out.exists():
        raise SystemExit(f"{out} exists: remove it or pick another --work")
    config = TrainConfig(dataset=str(folder), image_size=args.image_size, stream=True, max_steps=args.steps,
                         epochs=1000, threads=args.threads, num_workers=args.num_workers, out=str(out), seed=0)
    sampler = MemorySampler()
    sampler.start()
    result = train(config, progress=True)
    sampler.stop()
    report = {
        "part": "memory", "training_images": len(files), "image_size": args.image_size,
        "in_memory_bytes": files.nbytes, "steps": result.steps, "seconds": result.seconds,
        "peak_pss_bytes": sampler.peak_pss, "peak_rss_sum_bytes": sampler.peak_rss,
        "peak_processes": sampler.peak_processes, "knn_top1": result.metrics["knn_top1"],
    }
    gib = 2**30
    print(f"\n{len(files):,} training images at {args.image_size} px: {files.nbytes / gib:.2f} GiB if decoded in memory")
    print(f"streamed, {result.steps} steps in {result.seconds:.0f} s: peak PSS {sampler.peak_pss / gib:.2f} GiB "
          f"(RSS sum {sampler.peak_rss / gib:.2f} GiB) over {sampler.peak_processes} processes (target: under 4 GB)")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("throughput", "memory"))
    add_data_dir_argument(parser, "throughput: holds cifar10/{train,test}/<class>/*.jpg")
    parser.add_argument("--folder", default=None, help="throughput: another image folder instead of CIFAR-10")
    parser.add_argument("--work", default="/tmp/stream-bench", help="run directories and the generated folder")
    parser.add_argument("--images", type=int, default=200_000, help="memory: images to generate")
    parser.add_argument("--image-size", type=int, default=96, help="memory: training size")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--num-workers", type=int, default=None, help="decoding processes (default: the toolkit's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = throughput(args) if args.part == "throughput" else memory(args)
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
