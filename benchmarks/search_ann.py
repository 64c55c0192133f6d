"""Exact vs approximate nearest-neighbour search on clustered synthetic vectors.

Measures, for N unit vectors in D dimensions drawn from a Gaussian mixture
(uniform random vectors make ANN recall meaningless: every point is about
equally far from every other):

* exact ``IndexFlatIP``: batched queries per second (QPS);
* HNSW and IVF as ``dim-search`` builds them (:mod:`retrieval.ann`): build
  time, index size, the search parameter the recall tuning picks, then
  recall@10 against exact search on held-out queries, QPS and speed-up, plus
  a sweep of neighbouring parameter values.

Targets (on 2 CPU cores, N = 1M, D = 128): exact >= 400 QPS; HNSW or
IVF recall@10 >= 0.95 at >= 5x the exact QPS.

Usage:
    python benchmarks/search_ann.py                          # 1M x 128, all cores
    python benchmarks/search_ann.py --threads 2 --json       # the 2-core target
    python benchmarks/search_ann.py --num-vectors 20000      # a quick check
The last line with ``--json`` is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import faiss
import numpy as np

from retrieval import ann


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
    """Size of the serialised index (what ``index.faiss`` takes on disk, about its memory)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "index.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


def sweep_values(name: str, chosen: int, spec: ann.IndexSpec) -> list[int]:
    """The tuned value and its neighbours (halved, doubled, quadrupled) to show the trade-off."""
    limit = spec.build["nlist"] if name == "nprobe" else max(ann.EF_SEARCH_CANDIDATES)
    return sorted({value for value in (chosen // 2, chosen, chosen * 2, chosen * 4) if 1 <= value <= limit})


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
    parser.add_argument("--types", default="hnsw,ivf", help="comma-separated ANN types to compare with exact search")
    parser.add_argument("--threads", type=int, default=None, help="Faiss OpenMP threads (default: all cores)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="repeat each timed search at least this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print every number as one JSON object on the last line")
    args = parser.parse_args()
    if args.threads is not None:
        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    vectors, centres = clustered_vectors(args.num_vectors, args.dim, args.num_clusters, args.cluster_std, rng)
    queries, _ = clustered_vectors(args.num_queries, args.dim, args.num_clusters, args.cluster_std, rng, centres)
    ids = np.arange(args.num_vectors, dtype=np.int64)
    print(f"{args.num_vectors:,} x {args.dim} vectors in {args.num_clusters} clusters (std {args.cluster_std}), "
          f"{args.num_queries} queries, k={args.k}, {faiss.omp_get_max_threads()} threads; "
          f"generated in {time.perf_counter() - start:.1f} s")

    flat = ann.build_index(ann.IndexSpec("flat"), vectors, ids)
    exact_qps, truth = timed_search(flat, queries, args.k, args.min_seconds)
    report = {
        "num_vectors": args.num_vectors, "dim": args.dim, "num_clusters": args.num_clusters,
        "cluster_std": args.cluster_std, "num_queries": args.num_queries, "k": args.k,
        "threads": faiss.omp_get_max_threads(), "auto_type": ann.choose_index_spec(args.num_vectors).kind,
        "exact": {"qps": exact_qps, "bytes": index_bytes(flat)},
    }
    del flat
    rows = [("exact flat", "-", 1.0, exact_qps, 1.0)]

    for kind in filter(None, args.types.split(",")):
        spec = ann.choose_index_spec(args.num_vectors, kind)
        start = time.perf_counter()
        index = ann.build_index(spec, vectors, ids)
        build_seconds = time.perf_counter() - start
        start = time.perf_counter()
        search, tuned_recall = ann.tune_search_params(index, spec, vectors, ids, k=args.k)
        tune_seconds = time.perf_counter() - start
        (name, chosen), = search.items()
        sweep = []
        for value in sweep_values(name, chosen, spec):
            ann.set_search_params(index, {name: value})
            qps, found = timed_search(index, queries, args.k, args.min_seconds)
            recall = ann.recall_at_k(found, truth)
            sweep.append({name: value, "recall": recall, "qps": qps, "speedup": qps / exact_qps})
            label = kind + (" (tuned)" if value == chosen else "")
            rows.append((label, f"{name}={value}", recall, qps, qps / exact_qps))
        report[kind] = {
            "build": spec.build, "build_seconds": build_seconds, "tune_seconds": tune_seconds,
            "bytes": index_bytes(index), "tuned": search, "tuning_recall": tuned_recall,
            "at_tuned": next(row for row in sweep if row[name] == chosen), "sweep": sweep,
        }
        print(f"{kind}: {spec.build}, built in {build_seconds:.1f} s, tuned {name}={chosen} in {tune_seconds:.1f} s "
              f"(recall {tuned_recall:.3f} on tuning queries), {report[kind]['bytes'] / 2**20:.0f} MiB")
        del index

    print(f"exact flat: {report['exact']['bytes'] / 2**20:.0f} MiB")
    print(f"\n{'index':<16} {'param':<14} {'recall@' + str(args.k):>10} {'QPS':>10} {'speed-up':>9}")
    for label, param, recall, qps, speedup in rows:
        print(f"{label:<16} {param:<14} {recall:>10.4f} {qps:>10.0f} {speedup:>8.1f}x")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
