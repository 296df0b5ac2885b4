"""Exact search against the memory bound: ExactBackend vs one streaming read of the same matrix.

Exact search reads every stored vector once per call, so its floor is one streaming read of the
matrix. This measures, in alternating rounds of one process (the machine is shared: only ratios
measured side by side mean anything), for the matrix stored as float32 and as float16 in a
``.npy`` file opened with ``np.load(mmap_mode="r")`` (as :meth:`VideoIndex.load` opens it,
page cache warm):

- ``read``: one pass over the matrix, copied block by block into a small buffer, made again
  just before each measured call (the ratio "x read" is the call's time over that read's);
- ``exact``: :class:`text4vis.search.ExactBackend` (top 10) for one query (median over the
  queries) and for batches of queries (one call each), with the batch's arithmetic rate
  (``2 * Q * D * N`` flops over its time);
- ``faiss``: FAISS ``IndexFlatIP`` over a float32 copy of the matrix, for reference;

and float16's recall@10 against float32's exact top 10 on the same queries. "Largest batch
within 1.2x" is the largest batch measured whose whole call, and every smaller batch's, took at
most 1.2x its read (median over the rounds).

Threads: ``OMP_NUM_THREADS`` (1 unless set) for BLAS, PyTorch and FAISS; the read is always one
thread. The rate of an in-cache float32 matrix product, printed at the start and at the end,
is the most GFLOP/s a batch can reach on the shared machine at that time.

The vectors are the clustered unit vectors of ``benchmarks/search.py`` (``--data random`` for
Gaussian ones); queries are drawn from the same distribution.

    .venv/bin/python benchmarks/search_exact.py --sizes 100000 1000000
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/search_exact.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as benchmarks/search.py
os.environ.setdefault("OMP_NUM_THREADS", "1")  # read by BLAS when NumPy loads it
THREADS = int(os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import clustered_vectors, git_commit, unit_vectors  # noqa: E402
from text4vis.search import ExactBackend  # noqa: E402


def streaming_read(matrix: np.ndarray, rows: int = 4096) -> None:
    """Read every byte of ``matrix`` once (block copies into a buffer that stays in cache)."""
    buffer = np.empty((rows, matrix.shape[1]), matrix.dtype)
    for start in range(0, len(matrix), rows):
        block = matrix[start : start + rows]
        np.copyto(buffer[: len(block)], block)


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)]))


def peak_gflops(dim: int, rounds: int = 5) -> float:
    """The best rate of NumPy's BLAS on an in-cache float32 product [512, D] x [D, 512] (no
    memory traffic): what the core delivers now, the ceiling of a batch's GFLOP/s."""
    rng = np.random.default_rng(0)
    left, right = rng.standard_normal((2, 512, dim), dtype=np.float32)
    out = np.empty((512, 512), np.float32)
    best = min(
        seconds(lambda: [np.matmul(left, right.T, out=out) for _ in range(20)])
        for _ in range(rounds)
    )
    return 20 * 2 * 512 * 512 * dim / best / 1e9


def round_times(
    matrix: np.ndarray, backend: ExactBackend, queries: np.ndarray, args, flat
) -> dict[str, tuple[float, float]]:
    """One round over one stored matrix: seconds and the ratio to a read made just before, of
    the read itself, of single queries (medians) and of each batch; FAISS's single query when
    ``flat`` is given. Each call is paired with its own read: the machine's load changes."""

    def paired(call) -> tuple[float, float]:
        read = seconds(lambda: streaming_read(matrix))
        took = seconds(call)
        return took, took / read

    def median_of(pairs: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)

    singles = queries[: args.queries]
    runs = {"read": paired(lambda: streaming_read(matrix))}
    runs["1"] = median_of([paired(lambda q=q: backend.search(q[None], 10)) for q in singles])
    for size in args.batches:
        runs[f"b{size}"] = paired(lambda size=size: backend.search(queries[:size], 10))
    if flat is not None:
        runs["faiss"] = median_of([paired(lambda q=q: flat.search(q[None], 10)) for q in singles])
    return runs


def measure_size(n: int, args, make, faiss) -> list[str]:
    """The table's rows for ``n`` vectors (float32, then float16)."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("INDEX_BENCH_DIR")) as tmp:
        vectors = make(n, args.dim, seed=0)
        np.save(Path(tmp) / "f32.npy", vectors)
        np.save(Path(tmp) / "f16.npy", vectors.astype(np.float16))
        flat = None
        if faiss is not None:
            flat = faiss.IndexFlatIP(args.dim)
            flat.add(vectors)
        del vectors
        queries = make(max(args.queries, max(args.batches), args.recall_queries), args.dim, 1)
        stored = {
            "float32": np.load(Path(tmp) / "f32.npy", mmap_mode="r"),
            "float16": np.load(Path(tmp) / "f16.npy", mmap_mode="r"),
        }
        backends = {name: ExactBackend(matrix) for name, matrix in stored.items()}
        truth = backends["float32"].search(queries[: args.recall_queries], 10)[1]
        found = backends["float16"].search(queries[: args.recall_queries], 10)[1]
        recall16 = recall_at_k(found, truth)
        for matrix in stored.values():
            streaming_read(matrix)  # warm: pages in the cache and mapped
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, matrix in stored.items():
                runs = round_times(
                    matrix, backends[name], queries, args, flat if name == "float32" else None
                )
                for key, (took, ratio) in runs.items():
                    times.setdefault((name, key), []).append(took)
                    times.setdefault((name, key + "/read"), []).append(ratio)
        lines = []
        for name in stored:

            def cell(key: str, batch: int = 0, name: str = name) -> str:
                if (name, key) not in times:
                    return "-"
                ms = statistics.median(times[(name, key)]) * 1e3
                ratio = statistics.median(times[(name, key + "/read")])
                extra = f", {2 * batch * args.dim * n / ms / 1e6:.0f}" if batch else ""
                return f"{ms:.1f} ({ratio:.2f}x{extra})"

            within = "none"  # the largest batch that, with every smaller one, is within 1.2x
            for batch, key in [(1, "1")] + [(b, f"b{b}") for b in sorted(args.batches)]:
                if statistics.median(times[(name, key + "/read")]) > 1.2:
                    break
                within = str(batch)
            read_ms = statistics.median(times[(name, "read")]) * 1e3
            lines.append(
                f"| {n:,} | {name} | {THREADS} | {read_ms:.1f} | {cell('1')} | "
                + " | ".join(cell(f"b{b}", b) for b in args.batches)
                + f" | {within} | {cell('faiss')} | "
                + (f"{recall16:.3f} |" if name == "float16" else "1 |")
            )
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--data", choices=["clustered", "random"], default="clustered")
    parser.add_argument("--queries", type=int, default=10, help="single queries per round (10)")
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 3, 4, 8, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument("--no-faiss", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(THREADS)
    faiss = None
    if not args.no_faiss:
        import faiss

        faiss.omp_set_num_threads(THREADS)
    make = clustered_vectors if args.data == "clustered" else unit_vectors
    peak = peak_gflops(args.dim)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{THREADS} thread(s), 1-minute load {os.getloadavg()[0]:.1f}, commit {git_commit()}, "
        f"numpy {np.__version__}, torch {torch.__version__}, data {args.data}"
    )
    print(
        "| N | stored | threads | read ms | exact 1 query ms (x read) | "
        + " | ".join(f"batch of {b}: ms (x read, GFLOP/s)" for b in args.batches)
        + " | largest batch within 1.2x read | FAISS IndexFlatIP 1 query ms (x read) | "
        + "recall@10 vs float32 |"
    )
    print("|---|---|---|---|---|" + "---|" * len(args.batches) + "---|---|---|")
    for n in args.sizes:
        for line in measure_size(n, args, make, faiss):
            print(line, flush=True)
    print(
        f"1-minute load at the end {os.getloadavg()[0]:.1f}; in-cache sgemm "
        f"{peak_gflops(args.dim):.0f} GFLOP/s now ({peak:.0f} at the start)"
    )


if __name__ == "__main__":
    main()
