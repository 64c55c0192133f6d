"""Exact vs approximate nearest-neighbour search on clustered synthetic vectors, and what each index costs.

Measures, for N unit vectors in D dimensions drawn from a Gaussian mixture
(uniform random vectors make ANN recall meaningless: every point is about
equally far from every other):

* exact ``IndexFlatIP``: batched queries per second (QPS) and bytes a vector;
* HNSW, IVF and IVF-PQ as ``dim-search`` builds them (:mod:`retrieval.ann`):
  training and adding time, bytes a vector (the serialised index, which is
  what a loaded index holds in memory), the search parameter the recall tuning
  picks, then recall@10 against exact search on held-out queries, QPS and
  speed-up, plus a sweep of neighbouring parameter values. IVF-PQ is filled
  the way a cluster would fill it: ``--parts`` slices, each added to its own
  copy of the trained index (one after the other here, so each part's time is
  what one machine of a cluster would spend), then merged;
* the store's own cost a vector beside the index: a ``metadata.csv`` row and the
  records ``Index.load`` keeps in memory, for typical photo paths.

Targets (on 2 CPU cores, N = 1M, D = 128): exact >= 400 QPS; HNSW or
IVF recall@10 >= 0.95 at >= 5x the exact QPS. At D = 64 (DIM's code): IVF-PQ
at <= 40 bytes a vector with recall@10 >= 0.9.

Usage:
    python benchmarks/search_ann.py                                       # 1M x 128, all cores
    python benchmarks/search_ann.py --threads 2 --json                    # the 2-core target
    python benchmarks/search_ann.py --dim 64 --types ivf,ivfpq --threads 2  # the scale story, 1M
    python benchmarks/search_ann.py --num-vectors 20000                   # a quick check
The last line with ``--json`` is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import faiss
import numpy as np

from retrieval import ann, store


def clustered_vectors(
    num: int,
    dim: int,
    num_clusters: int,
    cluster_std: float,
    rng: np.random.Generator,
    centres: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(num, dim)`` float32 unit vectors from a Gaussian mixture, and its ``(num_clusters, dim)`` centres.

    Centres are standard normal; each point is its centre plus ``cluster_std``
    times standard normal noise, then L2-normalised. Generated in chunks to
    bound the float64 temporaries.
    """
    if centres is None:
        centres = rng.standard_normal((num_clusters, dim)).astype(np.float32)
    out = np.empty((num, dim), dtype=np.float32)
    for start in range(0, num, 100_000):
        stop = min(num, start + 100_000)
        chunk = centres[rng.integers(0, len(centres), stop - start)]
        chunk += cluster_std * rng.standard_normal((stop - start, dim), dtype=np.float32)
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out, centres


def timed_search(index: faiss.Index, queries: np.ndarray, k: int, min_seconds: float) -> tuple[float, np.ndarray]:
    """Batched search repeated for at least ``min_seconds``; returns (queries per second, ids of one run)."""
    start, runs = time.perf_counter(), 0
    while True:
        _, ids = index.search(queries, k)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return runs * len(queries) / elapsed, ids


def index_bytes(index: faiss.Index) -> int:
    """Size of the serialised index (what ``index.faiss`` takes on disk, and a loaded index in memory)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "index.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


def sweep_values(name: str, chosen: int, spec: ann.IndexSpec) -> list[int]:
    """The tuned value and its neighbours (halved, doubled, quadrupled) to show the trade-off."""
    limit = spec.build["nlist"] if name == "nprobe" else max(ann.EF_SEARCH_CANDIDATES)
    return sorted({value for value in (chosen // 2, chosen, chosen * 2, chosen * 4) if 1 <= value <= limit})


def build_timed(spec: ann.IndexSpec, vectors: np.ndarray, ids: np.ndarray, parts: int) -> tuple[faiss.Index, dict]:
    """:func:`retrieval.ann.build_index`'s steps, timed: train on the sample, then add (ivfpq: in parts, merged).

    The parts of an ivfpq index are added one after the other, each into its own
    copy of the trained index; ``part_seconds`` lists each one's time.
    """
    start = time.perf_counter()
    index = ann.train_index(spec, vectors)
    timing = {"train_seconds": time.perf_counter() - start}
    if spec.kind == "ivfpq":
        bounds = np.linspace(0, len(vectors), parts + 1).astype(int)
        filled, part_seconds = [], []
        for begin, end in zip(bounds[:-1], bounds[1:]):
            start = time.perf_counter()
            filled.append(ann.add_part(index, vectors[begin:end], ids[begin:end]))
            part_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        index = ann.merge_parts(filled)
        timing.update(part_seconds=part_seconds, merge_seconds=time.perf_counter() - start)
        timing["add_seconds"] = sum(part_seconds) + timing["merge_seconds"]
    else:
        start = time.perf_counter()
        index.add_with_ids(vectors, ids)
        timing["add_seconds"] = time.perf_counter() - start
    ann.set_search_params(index, spec.search)
    return index, timing


def store_bytes_per_image(num: int = 100_000) -> dict[str, float]:
    """The store's cost per image beside the index: a ``metadata.csv`` row, and the records in memory.

    ``num`` rows with photo-like paths (``photos/2024/06/IMG_0001234.jpg``, 30
    characters), sizes and modification times are written with the store's own
    writer and read back as ``Index.load`` reads them; memory is what the
    records and the id -> record map take (``tracemalloc``).
    """
    records = [
        store.ImageRecord(i, f"photos/{2000 + i % 25}/{1 + i % 12:02d}/IMG_{i:07d}.jpg", 2_000_000 + i, 1.7e9 + i)
        for i in range(num)
    ]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        store.metadata_writer(records)(folder / store.METADATA_FILE)
        csv_bytes = (folder / store.METADATA_FILE).stat().st_size
        del records
        tracemalloc.start()
        loaded = store.read_metadata(folder)  # what Index.load reads
        by_id = {record.id: record for record in loaded}  # and the map it keeps beside them
        memory, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    del loaded, by_id
    return {"metadata_csv": csv_bytes / num, "records_in_memory": memory / num}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num-clusters", type=int, default=4096, help="Gaussian mixture components.")
    parser.add_argument(
        "--cluster-std", type=float, default=1.0, help="per-dimension noise around a centre (centres ~ N(0, 1))"
    )
    parser.add_argument("--num-queries", type=int, default=2000, help="held-out queries from the same mixture")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument(
        "--types", default="hnsw,ivf,ivfpq", help="comma-separated ANN types to compare with exact search"
    )
    parser.add_argument("--parts", type=int, default=4, help="slices an ivfpq index is filled in, then merged")
    parser.add_argument("--threads", type=int, default=None, help="Faiss OpenMP threads (default: all cores)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="repeat each timed search at least this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print every number as one JSON object on the last line")
    args = parser.parse_args()
    if args.threads is not None:
        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    num = args.num_vectors

    start = time.perf_counter()
    vectors, centres = clustered_vectors(num, args.dim, args.num_clusters, args.cluster_std, rng)
    queries, _ = clustered_vectors(args.num_queries, args.dim, args.num_clusters, args.cluster_std, rng, centres)
    ids = np.arange(num, dtype=np.int64)
    print(f"{num:,} x {args.dim} vectors in {args.num_clusters} clusters (std {args.cluster_std}), "
          f"{args.num_queries} queries, k={args.k}, {faiss.omp_get_max_threads()} threads; "
          f"generated in {time.perf_counter() - start:.1f} s", flush=True)

    start = time.perf_counter()
    flat = ann.build_index(ann.IndexSpec("flat"), vectors, ids)
    flat_seconds = time.perf_counter() - start
    exact_qps, truth = timed_search(flat, queries, args.k, args.min_seconds)
    report = {
        "num_vectors": num, "dim": args.dim, "num_clusters": args.num_clusters,
        "cluster_std": args.cluster_std, "num_queries": args.num_queries, "k": args.k,
        "threads": faiss.omp_get_max_threads(), "auto_type": ann.choose_index_spec(num).kind,
        "exact": {"qps": exact_qps, "bytes": index_bytes(flat), "add_seconds": flat_seconds},
        "store": store_bytes_per_image(),
    }
    del flat
    print(f"exact flat: {report['exact']['bytes'] / num:.1f} bytes a vector, {exact_qps:.0f} QPS", flush=True)
    rows = [("exact flat", f"- + {flat_seconds:.1f} s", report["exact"]["bytes"] / num, "-", 1.0, exact_qps, 1.0)]

    for kind in filter(None, args.types.split(",")):
        spec = ann.choose_index_spec(num, kind, args.dim)
        index, timing = build_timed(spec, vectors, ids, args.parts)
        start = time.perf_counter()
        search, tuned_recall = ann.tune_search_params(index, spec, vectors, ids, k=args.k)
        tune_seconds = time.perf_counter() - start
        (name, chosen), = search.items()
        size = index_bytes(index)
        build = f"{timing['train_seconds']:.1f} + {timing['add_seconds']:.1f} s"
        sweep = []
        for value in sweep_values(name, chosen, spec):
            ann.set_search_params(index, {name: value})
            qps, found = timed_search(index, queries, args.k, args.min_seconds)
            recall = ann.recall_at_k(found, truth)
            sweep.append({name: value, "recall": recall, "qps": qps, "speedup": qps / exact_qps})
            label = kind + (" (tuned)" if value == chosen else "")
            rows.append((label, build if value == chosen else "", size / num, f"{name}={value}", recall, qps,
                         qps / exact_qps))
        report[kind] = {
            "build": spec.build, **timing, "tune_seconds": tune_seconds, "bytes": size, "bytes_per_vector": size / num,
            "tuned": search, "tuning_recall": tuned_recall,
            "at_tuned": next(row for row in sweep if row[name] == chosen), "sweep": sweep,
        }
        parts = f" in {args.parts} parts of {max(timing['part_seconds']):.1f} s at most, merged in " \
                f"{timing['merge_seconds']:.2f} s" if "part_seconds" in timing else ""
        print(f"{kind}: {spec.build}, trained in {timing['train_seconds']:.1f} s, added in "
              f"{timing['add_seconds']:.1f} s{parts}, tuned {name}={chosen} in {tune_seconds:.1f} s "
              f"(recall {tuned_recall:.3f} on tuning queries), {size / num:.1f} bytes a vector", flush=True)
        del index

    per_image = report["store"]
    print(f"\nstore beside the index, per image: metadata.csv {per_image['metadata_csv']:.0f} bytes on disk, "
          f"records {per_image['records_in_memory']:.0f} bytes in memory (photo-like paths of 30 characters)")
    print(f"\n{'index':<14} {'train + add':<16} {'bytes/vec':>9} {'param':<12} {'recall@' + str(args.k):>9} "
          f"{'QPS':>9} {'vs exact':>8}")
    for label, build, per_vector, param, recall, qps, speedup in rows:
        print(f"{label:<14} {build:<16} {per_vector:>9.1f} {param:<12} {recall:>9.4f} {qps:>9.0f} {speedup:>7.1f}x")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
