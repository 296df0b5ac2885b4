"""Search backends: query latency, recall@10 against exact search, and build time.

Random unit vectors (``N x 512`` float32, Gaussian then L2-normalised) stand in for video
embeddings, random unit vectors for queries. Exact search (one matrix product and a top-k,
:class:`text4vis.search.ExactBackend`) is the reference: it defines the true top 10, and the
approximate backends (FAISS IVF-Flat and HNSW, behind the same interface) are measured against
it in the same run.

``--data clustered`` draws the vectors and queries around 1000 random centres instead.

Random data in 512 dimensions is the hard case for approximate search: every point is about as
far from a query as every other, so there is no cluster structure for an index to exploit; real
embeddings, which cluster by content, give higher recall at the same settings.

Latency is per single query (one query at a time, as the page and the CLI search), median over
the queries; ``batch ms/q`` is the time per query when all queries go in one call. Run::

    .venv/bin/python benchmarks/search.py                       # 10^5 and 10^6, a few minutes
    .venv/bin/python benchmarks/search.py --sizes 10000 --queries 50      # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

# Busy-waiting OpenMP threads (the default) crawl on a shared, oversubscribed CPU; set before
# torch or faiss loads the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from text4vis.search import build_backend  # noqa: E402


def unit_vectors(n: int, dim: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``[n, dim]`` float32 Gaussian vectors normalised to unit length, made in chunks (memory)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def clustered_vectors(
    n: int, dim: int, seed: int, *, clusters: int = 1000, spread: float = 1.0, chunk: int = 100_000
) -> np.ndarray:
    """``[n, dim]`` unit vectors drawn around ``clusters`` random centres (the same centres for
    every seed: seed 0 for the collection, another seed for queries from the same distribution).

    Each vector is ``normalise(centre + spread * g / sqrt(dim))`` with ``g`` standard normal:
    with ``spread = 1`` the noise is as long as the centre, so clusters overlap, as embeddings of
    related videos do."""
    centres = unit_vectors(clusters, dim, seed=12345)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        block = centres[rng.integers(0, clusters, m)]
        block = block + spread / np.sqrt(dim) * rng.standard_normal((m, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


def measure(backend: Any, queries: np.ndarray, k: int) -> dict[str, Any]:
    """Single-query latencies (median, p90) and the batched time per query; the ids found."""
    backend.search(queries[:2], k)  # warm-up (thread pools, caches)
    single = []
    found = []
    for query in queries:
        start = time.perf_counter()
        _, ids = backend.search(query[None], k)
        single.append(time.perf_counter() - start)
        found.append(ids[0])
    start = time.perf_counter()
    backend.search(queries, k)
    batch = (time.perf_counter() - start) / len(queries)
    single.sort()
    return {
        "latency_ms": 1e3 * statistics.median(single),
        "p90_ms": 1e3 * single[int(0.9 * (len(single) - 1))],
        "batch_ms_per_query": 1e3 * batch,
        "ids": np.stack(found),
    }


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(
        np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)])
    )


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
        return commit + (" (uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(args: argparse.Namespace) -> dict[str, Any]:
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rows = []
    make = unit_vectors if args.data == "random" else clustered_vectors
    queries = make(args.queries, args.dim, seed=1)
    for n in args.sizes:
        start = time.perf_counter()
        vectors = make(n, args.dim, seed=0)
        print(f"# N={n}: made the vectors in {time.perf_counter() - start:.1f}s", flush=True)
        settings: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("exact", {}, {})]
        settings += [("faiss-ivf", {"nprobe": p}, {}) for p in args.nprobe]
        if n <= args.hnsw_max_size:
            settings += [("faiss-hnsw", {"ef_search": e}, {}) for e in args.ef_search]
        truth = None
        built: dict[str, tuple[Any, float]] = {}
        for name, search_options, _ in settings:
            if name not in built:
                start = time.perf_counter()
                backend = build_backend(name, vectors)
                built = {name: (backend, time.perf_counter() - start)}  # free the previous one
                print(f"# N={n}: built {name} in {built[name][1]:.1f}s", flush=True)
            backend, build_s = built[name]
            if name == "faiss-ivf":
                backend._index.nprobe = search_options["nprobe"]
            elif name == "faiss-hnsw":
                backend._index.hnsw.efSearch = search_options["ef_search"]
            result = measure(backend, queries, args.k)
            if truth is None:
                truth = result["ids"]
            row = {
                "n": n,
                "backend": name,
                "setting": ", ".join(f"{k}={v}" for k, v in search_options.items()) or "one matmul",
                "build_s": build_s,
                "latency_ms": result["latency_ms"],
                "p90_ms": result["p90_ms"],
                "batch_ms_per_query": result["batch_ms_per_query"],
                "recall_at_k": recall_at_k(result["ids"], truth),
            }
            if name == "faiss-ivf":
                row["setting"] = f"nlist={backend.nlist}, " + row["setting"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        del vectors, built
    return {
        "rows": rows,
        "dim": args.dim,
        "data": args.data,
        "queries": args.queries,
        "k": args.k,
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}",
        "load_average_before": args.load_before,
        "load_average_after": list(os.getloadavg()),
        "commit": git_commit(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"| N | backend | setting | build s | latency ms (median) | p90 ms | batch ms/q | "
        f"recall@{report['k']} | speed-up vs exact |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    exact = {r["n"]: r["latency_ms"] for r in report["rows"] if r["backend"] == "exact"}
    for r in report["rows"]:
        lines.append(
            f"| {r['n']:,} | {r['backend']} | {r['setting']} | {r['build_s']:.1f} | "
            f"{r['latency_ms']:.2f} | {r['p90_ms']:.2f} | {r['batch_ms_per_query']:.2f} | "
            f"{r['recall_at_k']:.3f} | {exact[r['n']] / r['latency_ms']:.1f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--data",
        choices=["random", "clustered"],
        default="random",
        help="random unit vectors (default, the hard case) or vectors around 1000 centres",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 256])
    parser.add_argument(
        "--hnsw-max-size",
        type=int,
        default=100_000,
        help="build HNSW only up to this N (its build takes many minutes at 10^6 on 2 cores)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads (1)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    args.load_before = list(os.getloadavg())
    report = run(args)
    print()
    print(
        f"{report['machine']}; threads {report['threads']}; load average "
        f"{args.load_before[0]:.1f} before, {report['load_average_after'][0]:.1f} after; "
        f"commit {report['commit']}; torch {report['torch']}, faiss {report['faiss']}; "
        f"{report['queries']} queries, {report['data']} data, D={report['dim']}"
    )
    print(table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
