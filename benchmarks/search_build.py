"""Building the approximate backends: seconds to build, recall@10 and latency they reach.

- ``faiss-hnsw`` at several graph settings (``M``, ``efConstruction``) and thread counts: the
  seconds to build the graph, then recall@10 (against exact search) and the median single-query
  latency at ``efSearch`` 64 and 256;
- ``faiss-ivf`` with ``--recall``: the seconds to train, add and tune ``nprobe`` on queries drawn
  from the index (:func:`text4vis.search_tuning.tune_nprobe`), and what it reached, also on
  held-out queries from the same distribution.

Vectors are the clustered unit vectors of ``benchmarks/search.py`` (``--data random``: Gaussian).

    .venv/bin/python benchmarks/search_build.py --sizes 100000 --hnsw 32,80,1 16,40,1 16,40,2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as benchmarks/search.py

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import clustered_vectors, git_commit, unit_vectors  # noqa: E402
from text4vis.search import ExactBackend, FaissIVFBackend  # noqa: E402


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))


def latency_ms(index, queries: np.ndarray) -> float:
    times = []
    for query in queries[:50]:
        start = time.perf_counter()
        index.search(query[None], 10)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--hnsw", nargs="*", default=["32,80,1", "16,40,1", "16,40,2"], help="M,efC,threads"
    )
    parser.add_argument("--recall", type=float, default=0.95, help="faiss-ivf target")
    parser.add_argument("--no-ivf", action="store_true")
    parser.add_argument("--data", choices=["clustered", "random"], default="clustered")
    args = parser.parse_args()
    import faiss

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, 1-minute load "
        f"{os.getloadavg()[0]:.1f}, commit {git_commit()}, faiss {faiss.__version__}, "
        f"data {args.data}"
    )
    print("| N | backend | settings | threads | build s | recall@10 | ms/query |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        make = clustered_vectors if args.data == "clustered" else unit_vectors
        vectors = make(n, args.dim, seed=0)
        queries = make(200, args.dim, seed=1)
        faiss.omp_set_num_threads(1)
        truth = ExactBackend(vectors).search(queries, 10)[1]
        if not args.no_ivf:
            start = time.perf_counter()
            ivf = FaissIVFBackend(vectors, recall=args.recall)
            built = time.perf_counter() - start
            tuning = ivf.tuning
            held_out = recall_at_10(ivf.search(queries, 10)[1], truth)
            print(
                f"| {n:,} | faiss-ivf | nlist {tuning.nlist}, nprobe {tuning.nprobe} (tuned for "
                f"{args.recall}: {tuning.recall:.3f} on rows) | 1 | {built:.1f} | "
                f"{held_out:.3f} | {latency_ms(ivf._index, queries):.2f} |",
                flush=True,
            )
            del ivf
        for spec in args.hnsw:
            m, ef_construction, threads = (int(v) for v in spec.split(","))
            faiss.omp_set_num_threads(threads)
            index = faiss.IndexHNSWFlat(args.dim, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            start = time.perf_counter()
            index.add(vectors)
            built = time.perf_counter() - start
            faiss.omp_set_num_threads(1)
            for ef_search in (64, 256):
                index.hnsw.efSearch = ef_search
                recall = recall_at_10(index.search(queries, 10)[1], truth)
                print(
                    f"| {n:,} | faiss-hnsw | M {m}, efConstruction {ef_construction}, "
                    f"efSearch {ef_search} | {threads} | {built:.1f} | {recall:.3f} | "
                    f"{latency_ms(index, queries):.2f} |",
                    flush=True,
                )
            del index
    print(f"1-minute load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
