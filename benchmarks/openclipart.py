"""Benchmark: search features trained by ``dim-search build``'s one command on Openclipart CLIPART (not photos).

Usage:
    apt-get install openclipart-png                                   # Debian's package, public domain
    python benchmarks/openclipart.py --out runs/bench-openclipart --minutes 5 --sizes 64,96 --json
    python benchmarks/openclipart.py --out /tmp/openclipart-smoke --minutes 0.1 --sizes 32   # smoke test

The data is Debian's ``openclipart-png``: 8,121 PNG listings under
``/usr/share/openclipart/png/<category>/...`` in 22 top-level categories (many in
deeper sub-folders), mostly drawings on a transparent background. 1,221 listings
are symlinks to a file listed elsewhere (the same drawing under a second category,
or twice in one); each of the 6,900 files is taken once, labelled by the category
of its real location, so no drawing is in both train and test. Every image is
labelled by its top-level category; categories with fewer than :data:`MIN_IMAGES`
files are dropped. The split is fixed by ``--seed``: each category's files are
shuffled with it and ``--test-fraction`` of them go to test. It is written once as
a folder of absolute symlinks, ``OUT/split-seedN/{train,test}/<category>/
<sub-folders__file>.png``, which ``dim train OUT/split-seedN`` also reads.
The images go through the toolkit's own loader (transparency composited onto white,
shorter side resized to the training size, centre-cropped), decoded once per size
and cached. The first decode is slow: 12 drawings are 105-170 megapixels and PNGs
have no reduced-scale decoding (they are box-reduced right after decoding); 3 more
exceed PIL's decompression-bomb limit and are skipped, and reported.

For each ``--sizes`` entry, three rows on the test split with the training split as memory:

* ``dim``: the one command ``dim-search build SPLIT --index RUN/index --image-size SIZE --train-minutes
  MINUTES`` (run as a separate process): it trains a DIM encoder on the split's training images (the
  best preset, :func:`dim.train.train_folder`), keeps it in ``RUN/index/model`` and indexes the
  folder; the row judges that model's code z. Without ``--image-size`` the command would choose 96 px
  for this collection (the largest of 32, 64 and 96 px not above the median shorter side, printed);
* ``random``: the same encoder architecture at that size, randomly initialised (seed ``--seed``), untrained;
* ``pixels``: the images themselves, flattened and scaled to [-1, 1], no training.

Each row reports the weighted kNN top-1 (the protocol of :mod:`dim.core.probes`,
T = 0.1, with ``--k`` neighbours: 20 by default rather than the protocol's 200,
which is more than the training images of 13 of the 20 kept categories), the
precision@10 (the fraction of each test image's 10 nearest training images by cosine
similarity that share its category) and, for DIM, the training images/s, the steps and the
minutes the whole command took (training and indexing).
Each run folder also gets ``knn.png`` (test images and their 9 nearest training
images). A run folder that already holds ``benchmark.json`` is read back, not
retrained. With ``--json`` the last line printed is a JSON list, one object per row.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dim.core.atomic import atomic_write
from dim.core.datasets import load_dataset
from dim.core.files import find_images
from dim.core.memory import ImageDataset
from dim.core.probes import (
    extract_features,
    grid_queries,
    knn_classify,
    save_neighbour_grid,
)
from dim.core.registry import load_feature_extractor
from dim.models import Encoder, feature_extractor
from retrieval.index import MODEL_DIR

DEFAULT_SOURCE = "/usr/share/openclipart/png"
MIN_IMAGES = 10  # categories with fewer files are dropped
TEMPERATURE = 0.1  # the kNN protocol's vote temperature
PRECISION_K = 10


def category_of(path: Path, root: Path) -> str:
    """The top-level sub-folder of ``path`` under ``root``."""
    return path.relative_to(root).parts[0]


def list_categories(source: Path) -> tuple[dict[str, list[Path]], int]:
    """Each top-level category's listings (sorted), every file once; and the number of listings.

    A file listed more than once (the target of symlinks) is labelled by its real location when that is
    one of its listings, else by its first listing.
    """
    listings = find_images(source)
    chosen: dict[Path, Path] = {}  # real file -> the listing that labels it
    for path in sorted(listings, key=Path.is_symlink):  # the real files first, then the links (a stable sort)
        chosen.setdefault(path.resolve(), path)
    categories: dict[str, list[Path]] = {}
    for listing in sorted(chosen.values()):
        categories.setdefault(category_of(listing, source), []).append(listing)
    return categories, len(listings)


def write_split(source: Path, split_dir: Path, seed: int, test_fraction: float) -> dict[str, Any]:
    """Write the seed's split as a folder of absolute symlinks (built aside, then renamed into place).

    Returns the manifest, also saved as ``split.json``: the settings, the number of listings and of
    distinct files, each kept category's ``[train, test]`` counts and the dropped categories' sizes.
    """
    categories, num_listings = list_categories(source)
    kept = {name: files for name, files in categories.items() if len(files) >= MIN_IMAGES}
    partial = split_dir.with_name(split_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run; links only, none is followed
    counts = {}
    for name, files in sorted(kept.items()):
        shuffled = list(files)
        random.Random(f"{seed}:{name}").shuffle(shuffled)
        num_test = min(len(files) - 1, max(1, round(test_fraction * len(files))))
        for split, chosen in (("test", shuffled[:num_test]), ("train", shuffled[num_test:])):
            folder = partial / split / name
            folder.mkdir(parents=True)
            for listing in chosen:
                flat = "__".join(listing.relative_to(source).parts[1:])  # sub-folders under the category
                (folder / flat).symlink_to(listing.resolve())  # absolute: a relative target would dangle
        counts[name] = [len(files) - num_test, num_test]
    manifest = {
        "source": str(source), "seed": seed, "test_fraction": test_fraction, "min_images": MIN_IMAGES,
        "num_listings": num_listings, "num_files": sum(len(files) for files in categories.values()),
        "counts": counts,
        "dropped": {name: len(files) for name, files in sorted(categories.items()) if name not in kept},
    }
    (partial / "split.json").write_text(json.dumps(manifest, indent=2) + "\n")
    partial.rename(split_dir)
    return manifest


def open_split(source: Path, out: Path, seed: int, test_fraction: float) -> tuple[Path, dict[str, Any]]:
    """The split folder ``out/split-seedN`` and its manifest, written unless it exists already.

    Raises:
        ValueError: if the existing split was made from another source or test fraction.
    """
    split_dir = out / f"split-seed{seed}"
    if not split_dir.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        return split_dir, write_split(source, split_dir, seed, test_fraction)
    manifest = json.loads((split_dir / "split.json").read_text())
    wanted = {"source": str(source), "test_fraction": test_fraction, "min_images": MIN_IMAGES}
    made = {name: manifest[name] for name in wanted}
    if made != wanted:
        raise ValueError(f"{split_dir} was made with {made}, not {wanted}: use another --out")
    return split_dir, manifest


def precision_at(neighbours: Tensor, memory_labels: Tensor, query_labels: Tensor, k: int) -> float:
    """The fraction of each query's ``k`` nearest memory items (``neighbours``, nearest first) sharing its label."""
    return (memory_labels.cpu()[neighbours[:, :k]] == query_labels.cpu()[:, None]).float().mean().item()


def judge(train_features: Tensor, test_features: Tensor, train_set: ImageDataset, test_set: ImageDataset, k: int,
          grid_path: Path) -> dict[str, Any]:
    """Weighted kNN top-1 and precision@10 of test features against training features; draws the neighbour grid."""
    result = knn_classify(train_features, train_set.labels, test_features, test_set.labels, train_set.num_classes,
                          k, TEMPERATURE)
    shown = grid_queries(test_set.labels)
    save_neighbour_grid(grid_path, test_set.images[shown], train_set.images, result.neighbours[shown])
    return {
        "k": result.k, "temperature": TEMPERATURE, "knn_top1": result.top1,
        f"precision_at_{PRECISION_K}": precision_at(result.neighbours, train_set.labels, test_set.labels,
                                                    PRECISION_K),
        "num_train": len(train_set), "num_test": len(test_set),
    }


def run_dim(run_dir: Path, split_dir: Path, size: int, args: argparse.Namespace, train_set: ImageDataset,
            test_set: ImageDataset) -> dict[str, Any]:
    """Run ``dim-search build`` without a model at ``size`` px for the budget and judge the code z it trained."""
    index_dir = run_dir / "index"
    shutil.rmtree(index_dir, ignore_errors=True)  # left by an interrupted run
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "retrieval.cli", "build", str(split_dir), "--index", str(index_dir),
                    "--image-size", str(size), "--train-minutes", f"{args.minutes:g}"], check=True)
    command_minutes = (time.perf_counter() - start) / 60
    model_dir = index_dir / MODEL_DIR
    extractor = load_feature_extractor(model_dir)
    if extractor.image_size != size:
        raise RuntimeError(f"{model_dir} holds a model for {extractor.image_size} px images, not {size} px")
    features = [extract_features(extractor, dataset.images) for dataset in (train_set, test_set)]
    with open(model_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    seconds = sum(float(row["seconds"]) for row in rows)
    images = sum(float(row["images_per_s"]) * float(row["seconds"]) for row in rows)
    return {
        "features": extractor.name, "feature_dim": extractor.feature_dim,
        **judge(*features, train_set, test_set, args.k, run_dir / "knn.png"),
        "train_images_per_s": images / max(seconds, 1e-9), "steps": int(rows[-1]["step"]),
        "train_minutes": seconds / 60, "command_minutes": command_minutes,
    }


def run_random(run_dir: Path, size: int, seed: int, train_set: ImageDataset, test_set: ImageDataset,
               k: int) -> dict[str, Any]:
    """Judge the code z of the default DIM encoder at ``size`` px, randomly initialised and never trained."""
    torch.manual_seed(seed)
    extractor = feature_extractor(Encoder(image_size=size))
    features = [extract_features(extractor, dataset.images) for dataset in (train_set, test_set)]
    return {
        "features": extractor.name, "feature_dim": extractor.feature_dim,
        **judge(*features, train_set, test_set, k, run_dir / "knn.png"),
        "train_images_per_s": None, "steps": None, "train_minutes": None, "command_minutes": None,
    }


def run_pixels(run_dir: Path, train_set: ImageDataset, test_set: ImageDataset, k: int) -> dict[str, Any]:
    """Judge the raw pixels, flattened and scaled to [-1, 1]."""
    features = [dataset.images.flatten(1).float() / 127.5 - 1 for dataset in (train_set, test_set)]
    return {
        "features": "pixels", "feature_dim": features[0].shape[1],
        **judge(*features, train_set, test_set, k, run_dir / "knn.png"),
        "train_images_per_s": None, "steps": None, "train_minutes": None, "command_minutes": None,
    }


def run_model(model: str, size: int, args: argparse.Namespace, split_dir: Path, train_set: ImageDataset,
              test_set: ImageDataset) -> dict[str, Any]:
    """One row of the table, read back from ``benchmark.json`` in its run folder when it is there."""
    budget = f"-{args.minutes:g}min" if model == "dim" else ""
    name = f"{model}-{size}px{budget}-seed{args.seed}"
    run_dir = Path(args.out) / name
    saved = run_dir / "benchmark.json"
    if saved.exists():
        row = json.loads(saved.read_text())
        if row["k"] != args.k:
            raise ValueError(f"{saved} was judged with k = {row['k']}, not {args.k}: delete it to judge again")
        return row
    run_dir.mkdir(parents=True, exist_ok=True)
    if model == "dim":
        measured = run_dim(run_dir, split_dir, size, args, train_set, test_set)
    elif model == "random":
        measured = run_random(run_dir, size, args.seed, train_set, test_set, args.k)
    else:
        measured = run_pixels(run_dir, train_set, test_set, args.k)
    row = {"model": model, "image_size": size, "seed": args.seed,
           "budget_minutes": args.minutes if model == "dim" else None, "run_dir": str(run_dir), **measured}
    atomic_write(saved, lambda path: Path(path).write_text(json.dumps(row, indent=2)))
    return row


def chance_rates(train_set: ImageDataset, test_set: ImageDataset) -> tuple[str, float, float]:
    """The largest training category, the top-1 of always guessing it, and the precision@k of neighbours drawn
    at random from the training split."""
    train_counts, test_counts = (torch.bincount(dataset.labels, minlength=train_set.num_classes).double()
                                 for dataset in (train_set, test_set))
    largest = int(train_counts.argmax())
    precision = (train_counts / train_counts.sum() * test_counts / test_counts.sum()).sum().item()
    return train_set.classes[largest], (test_counts[largest] / test_counts.sum()).item(), precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="the openclipart-png folder of category folders")
    parser.add_argument("--out", default="runs/bench-openclipart", help="work folder: the split and the runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of training")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget of each DIM run")
    parser.add_argument("--sizes", default="64,96", help="comma-separated training image sides, in px")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of each category held out")
    parser.add_argument("-k", type=int, default=20, help=f"kNN neighbours that vote (at least {PRECISION_K})")
    parser.add_argument("--json", action="store_true", help="print a JSON list as the last line")
    args = parser.parse_args()

    source = Path(args.source)
    if not source.is_dir():
        parser.error(f"{source} is not a folder: install Debian's openclipart-png (apt-get install "
                     "openclipart-png) or point --source at its png/ folder")
    if not 0 < args.test_fraction < 1:
        parser.error(f"--test-fraction must lie strictly between 0 and 1, got {args.test_fraction}")
    if args.k < PRECISION_K:
        parser.error(f"-k must be at least {PRECISION_K} (precision@{PRECISION_K} reads the kNN's neighbours)")
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    if not sizes:
        parser.error("--sizes names no image size")

    split_dir, manifest = open_split(source, Path(args.out), args.seed, args.test_fraction)
    counts = manifest["counts"]
    num_train, num_test = (sum(c[i] for c in counts.values()) for i in (0, 1))
    dropped = ", ".join(f"{name} ({count})" for name, count in manifest["dropped"].items()) or "none"
    print(f"{split_dir}: {manifest['num_files']:,} distinct files of {manifest['num_listings']:,} listings; "
          f"{len(counts)} categories kept, {num_train:,} train / {num_test:,} test; dropped (< {MIN_IMAGES} files): "
          f"{dropped}", flush=True)

    rows = []
    for size in sizes:
        start = time.perf_counter()
        train_set, test_set = (load_dataset(split_dir, split, image_size=size) for split in ("train", "test"))
        print(f"{size} px: {len(train_set):,} train and {len(test_set):,} test images loaded in "
              f"{time.perf_counter() - start:.0f} s (decoded on first use, then from the cache)", flush=True)
        for model in ("dim", "random", "pixels"):
            row = run_model(model, size, args, split_dir, train_set, test_set)
            rows.append(row)
            print(f"{size} px {model}: kNN top-1 {100 * row['knn_top1']:.2f}%, "
                  f"precision@{PRECISION_K} {100 * row[f'precision_at_{PRECISION_K}']:.2f}%", flush=True)

    largest, majority, random_precision = chance_rates(train_set, test_set)  # the same files at every size
    print(f"\nOpenclipart CLIPART (drawings, not photos), split seed {args.seed}: weighted {args.k}-NN top-1 "
          f"(T = {TEMPERATURE}) and precision@{PRECISION_K} by top-level category on the test split "
          f"({len(test_set):,} images, {test_set.num_classes} categories), training split ({len(train_set):,}) "
          "as memory")
    print(f"chance: always '{largest}' {100 * majority:.2f}% top-1; random neighbours {100 * random_precision:.2f}% "
          f"precision@{PRECISION_K}")
    print(f"{'size':>4}  {'model':<6}  {'kNN top-1':>9}  {'prec@' + str(PRECISION_K):>8}  {'train img/s':>11}  "
          f"{'steps':>7}  {'train min':>9}  {'command min':>11}")
    for row in rows:
        speed = "-" if row["train_images_per_s"] is None else f"{row['train_images_per_s']:,.0f}"
        steps = "-" if row["steps"] is None else str(row["steps"])
        minutes = "-" if row["train_minutes"] is None else f"{row['train_minutes']:.1f}"
        command = "-" if row["command_minutes"] is None else f"{row['command_minutes']:.1f}"
        print(f"{row['image_size']:>4}  {row['model']:<6}  {100 * row['knn_top1']:>8.2f}%  "
              f"{100 * row[f'precision_at_{PRECISION_K}']:>7.2f}%  {speed:>11}  {steps:>7}  {minutes:>9}  "
              f"{command:>11}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
