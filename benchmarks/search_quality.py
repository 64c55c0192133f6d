"""Retrieval quality of a trained encoder: precision@k on a labelled image-folder dataset.

Indexes the training images with ``dim-search``'s own code (:meth:`retrieval.Index.build`,
so decoding, preprocessing and the index are the product's), then queries with
every test image and counts how many of the k neighbours share its class (the
first-level sub-folder name). Also reports the build throughput.

Target: precision@10 >= 70 % on CIFAR-10 (test queries against the train set)
once DIM reaches its kNN target of >= 60 % top-1 after 30 minutes.

Usage:
    python benchmarks/search_quality.py runs/dim-cifar10 --data DATA/cifar10 --json
    python benchmarks/search_quality.py runs/dim-cifar10 --data DATA/cifar10 \\
        --num-train 5000 --num-queries 500                                         # a quick check
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dim.core.embedding import embed_images
from dim.core.files import find_images
from retrieval.index import Index


def class_of(path: Path, root: Path) -> str:
    """The first-level sub-folder of ``path`` under ``root``."""
    return path.relative_to(root).parts[0]


def spread_subset(paths: list[Path], limit: int | None) -> list[Path]:
    """At most ``limit`` paths evenly spaced over the sorted list (so every class folder is represented)."""
    if limit is None or limit >= len(paths):
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a DIM run / checkpoint or an InfoGAN checkpoint")
    parser.add_argument("--data", required=True, help="dataset folder with train/<class>/* and test/<class>/*")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=None, help="index only this many training images")
    parser.add_argument("--num-queries", type=int, default=None, help="query with only this many test images")
    parser.add_argument("--index-type", default="auto", choices=["auto", "flat", "hnsw", "ivf"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print every number as one JSON object on the last line")
    args = parser.parse_args()
    train_root, test_root = Path(args.data) / "train", Path(args.data) / "test"

    with tempfile.TemporaryDirectory() as scratch:
        image_dir = train_root
        if args.num_train is not None:  # a subset, linked into a scratch folder with the same class layout
            image_dir = Path(scratch) / "train"
            for path in spread_subset(find_images(train_root), args.num_train):
                link = image_dir / path.relative_to(train_root)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path.resolve())
        start = time.perf_counter()
        index = Index.build(args.model, image_dir, Path(scratch) / "index", args.index_type, args.batch_size,
                            args.num_workers, args.device, progress=True)
        build_seconds = time.perf_counter() - start

        queries = spread_subset(find_images(test_root), args.num_queries)
        start = time.perf_counter()
        embedded = embed_images(index.model, queries, args.batch_size, args.num_workers, progress=True)
        _, ids = index.search_vectors(embedded.vectors, args.k)
        query_seconds = time.perf_counter() - start
        query_classes = np.array([class_of(queries[i], test_root) for i in embedded.positions])
        found_classes = np.array([[Path(index.record(i).path).parts[0] for i in row] for row in ids])
        precision = float((found_classes == query_classes[:, None]).mean())
        shutil.rmtree(Path(scratch) / "index")

    report = {
        "model": index.manifest["model"], "index_type": index.index_type, "k": args.k,
        "num_indexed": len(index), "num_skipped": len(index.skipped), "num_queries": len(embedded.positions),
        f"precision_at_{args.k}": precision, "build_seconds": build_seconds,
        "build_images_per_s": (len(index) + len(index.skipped)) / build_seconds,
        "query_seconds": query_seconds, "queries_per_s": len(embedded.positions) / query_seconds,
    }
    print(f"{index.manifest['model']['name']}: precision@{args.k} = {precision:.2%} over {report['num_queries']} "
          f"queries against {len(index)} indexed images ({index.index_type}); build {build_seconds:.1f} s "
          f"({report['build_images_per_s']:,.0f} images/s), queries {report['queries_per_s']:,.0f} images/s")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
