"""Exact search with its rows split across threads against one thread and against BLAS's own
threads, each call's time over a streaming read made just before it (median of 5 ratios).

``N x 512`` clustered float32 unit vectors in memory; batches of 1, 8 and 64 queries, top 10.
"2 threads (row parts)" is ``ExactBackend(threads=2)``: two parts of the rows scanned at once,
each with a single-threaded BLAS; "1 part, BLAS 2 threads" is one scan whose matrix products
OpenBLAS splits over 2 threads (what the default did before the row parts).

    .venv/bin/python benchmarks/search_threads.py --size 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import threadpoolctl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import clustered_vectors, git_commit  # noqa: E402
from search_exact import streaming_read  # noqa: E402
from text4vis.search import ExactBackend  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.size
    vectors = np.empty((n, 512), np.float32)
    for start in range(0, n, 100_000):
        count = min(100_000, n - start)
        vectors[start : start + count] = clustered_vectors(count, 512, seed=10 + start // 100_000)
    queries = clustered_vectors(64, 512, seed=1)
    blas = threadpoolctl.threadpool_info()[0]
    print(
        f"N {n:,} x 512 float32, {os.cpu_count()} CPUs, BLAS {blas['internal_api']} "
        f"({blas['num_threads']} threads), commit {git_commit()}, "
        f"1-minute load {os.getloadavg()[0]:.1f}"
    )

    def blas_threads(batch: np.ndarray) -> object:
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            return ExactBackend(vectors, threads=1).search(batch, 10)

    variants = {
        "1 thread": lambda batch: ExactBackend(vectors, threads=1).search(batch, 10),
        "2 threads (row parts)": lambda batch: ExactBackend(vectors, threads=2).search(batch, 10),
        "1 part, BLAS 2 threads": blas_threads,
    }
    one = ExactBackend(vectors, threads=1).search(queries[:8], 10)
    two = ExactBackend(vectors, threads=2).search(queries[:8], 10)
    assert (one[1] == two[1]).all(), "the row parts changed the answer"
    print("| queries | " + " | ".join(f"{name}: x read" for name in variants) + " |")
    print("|---|" + "---|" * len(variants))
    for count in (1, 8, 64):
        cells = []
        for run in variants.values():
            ratios = []
            for _ in range(args.rounds):
                with threadpoolctl.threadpool_limits(1, user_api="blas"):
                    start = time.perf_counter()
                    streaming_read(vectors)
                    read = time.perf_counter() - start
                start = time.perf_counter()
                run(queries[:count])
                ratios.append((time.perf_counter() - start) / read)
            cells.append(f"{statistics.median(ratios):.2f}x")
        print(f"| {count} | " + " | ".join(cells) + " |")
    print(f"1-minute load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
