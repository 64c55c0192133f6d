"""Latency of ``dim-search serve``: neighbours, an upload query, and a cold first page of thumbnails.

Builds (once, then reuses) an index of CIFAR-10's training images (the JPEG
image-folder copy, 50,000 images in ten class folders) and serves it with the
real threaded server (:func:`retrieval.serve.start_server`) on a free loopback
port, then measures over HTTP what the page asks for:

* ``GET /api/neighbours/ID?k=20`` for random ids: p50 and p95;
* ``POST /api/search?k=20`` with a CIFAR-10 *test* JPEG (decode, preprocess, forward, search): p50 and p95;
* a cold first page: ``GET /api/images?per_page=60`` and its 60 thumbnails fetched
  over 6 connections, as a browser does, with the thumbnail cache emptied first;
  the time until the last thumbnail has arrived, for several folders.

Latency does not depend on training, so without ``--model`` a freshly
initialised default DIM encoder (32x32 RGB, z = 64) embeds the images.

Targets (2 CPU cores, 50,000 images): neighbours p95 <= 50 ms, upload p95 <=
150 ms, first page of 60 thumbnails < 1 s cold.

Usage:
    python benchmarks/search_serve.py --data-dir DATA --threads 2
    python benchmarks/search_serve.py --data-dir DATA --images 2000 --requests 50   # a quick check
The last line with ``--json`` is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import random
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from data_root import (  # the benchmarks' --data-dir / $DIM_DATA_DIR
    add_data_dir_argument,
    require_data_dir,
)

from dim.core.features import FeatureExtractor
from dim.core.files import find_images
from dim.models import Encoder, feature_extractor
from retrieval.index import Index
from retrieval.serve import THUMBNAIL_DIR, start_server


def default_encoder() -> FeatureExtractor:
    """An untrained default DIM encoder wrapped as ``dim.load_features`` wraps a trained one."""
    return feature_extractor(Encoder())


def build_index(train_dir: Path, index_dir: Path, images: int, model: FeatureExtractor) -> Index:
    """The index of the first ``images`` training images (one folder of links, built once and reused)."""
    if (index_dir / "manifest.json").is_file():
        return Index.load(index_dir, model=model)
    folder = index_dir.parent / f"{index_dir.name}-images"
    shutil.rmtree(folder, ignore_errors=True)
    for path in find_images(train_dir)[:images]:
        link = folder / path.relative_to(train_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())  # an absolute target: a relative one would dangle from the link folder
    started = time.perf_counter()
    index = Index.build(model, folder, index_dir, progress=True)
    print(f"built an index of {len(index)} images in {time.perf_counter() - started:.0f} s")
    return index


def percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
            "max_ms": float(values.max()), "n": len(values)}


def request(port: int, method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, url, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {url}: {response.status} {data[:200]!r}")
        return data
    finally:
        connection.close()


def multipart(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_dir_argument(parser, "holds cifar10/{train,test}/<class>/*.jpg")
    parser.add_argument("--index-dir", type=Path, default=Path("/tmp/dim-search-serve-bench/index"))
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=300, help="neighbour and upload requests each")
    parser.add_argument("--pages", type=int, default=5, help="cold first pages (one per class folder)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    cifar = Path(require_data_dir(args.data_dir)) / "cifar10"
    index = build_index(cifar / "train", args.index_dir, args.images, default_encoder())
    server = start_server(index, "127.0.0.1", 0, reload_interval=1.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_port
    ids = [record.id for record in index.records]
    queries = [path.read_bytes() for path in random.sample(find_images(cifar / "test"), 50)]
    request(port, "GET", f"/api/neighbours/{ids[0]}?k={args.k}")  # warm up: first search, first forward pass
    request(port, "POST", f"/api/search?k={args.k}", *multipart("warm.jpg", queries[0]))

    neighbours = [timed(lambda: request(port, "GET", f"/api/neighbours/{random.choice(ids)}?k={args.k}"))
                  for _ in range(args.requests)]
    uploads = []
    for number in range(args.requests):
        body, headers = multipart(f"q{number}.jpg", queries[number % len(queries)])
        uploads.append(timed(lambda: request(port, "POST", f"/api/search?k={args.k}", body, headers)))

    folders = [folder["name"] for folder in json.loads(request(port, "GET", "/api/info"))["folders"]][: args.pages]
    pages = []
    with ThreadPoolExecutor(max_workers=6) as browser:
        for folder in folders:
            shutil.rmtree(index.directory / THUMBNAIL_DIR, ignore_errors=True)

            def first_page(folder: str = folder) -> None:
                listing = json.loads(request(port, "GET", f"/api/images?per_page=60&folder={folder}"))
                list(browser.map(lambda image: request(port, "GET", image["thumbnail"]), listing["images"]))

            pages.append(timed(first_page))
    server.shutdown()

    results = {
        "images": len(index), "index_type": index.index_type, "k": args.k, "torch_threads": args.threads,
        "neighbours": percentiles(neighbours), "upload": percentiles(uploads),
        "first_page_cold": {"mean_s": float(np.mean(pages)), "max_s": float(np.max(pages)), "n": len(pages)},
    }
    print(f"{len(index)} images ({index.index_type}), k = {args.k}, torch threads {args.threads}")
    print(f"{'request':<28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name in ("neighbours", "upload"):
        row = results[name]
        print(f"{name:<28} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['max_ms']:>8.1f}")
    page = results["first_page_cold"]
    print(f"first page of 60, cold: mean {page['mean_s']:.3f} s, worst {page['max_s']:.3f} s over {page['n']} folders")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
