"""Opening a saved index: seconds and resident memory before the first query, and the first query.

A synthetic index of ``N x D`` unit vectors (float32 or float16) with one row per made-up video
path is written directly with NumPy through :func:`text4vis.index_store.write_index` (no video
is embedded); then a fresh Python process opens it with :meth:`VideoIndex.load` and reports the
time, its resident memory (``VmRSS``) before and after the open, and after the first exact
query (which maps the matrix's pages, and for float16 imports PyTorch), and the time of a second
query. ``--legacy`` also writes the same rows as a format-1 index (every row in ``index.json``,
``embeddings.safetensors``) and opens that, for the ratio in the same run.

    .venv/bin/python benchmarks/index_open.py --sizes 1000000 --legacy
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import git_commit, unit_vectors  # noqa: E402


def rss_mib() -> float:
    """This process's resident memory in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_table(n: int):  # -> VideoTable
    """Rows of made-up absolute paths (about 45 bytes each), sizes and times."""
    from text4vis.index_store import VideoTable

    names = [f"/data/videos/part{i // 10000:04d}/clip_{i:08d}.mp4".encode() for i in range(n)]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum([len(b) for b in names], out=offsets[1:])
    path_bytes = np.frombuffer(b"".join(names), np.uint8).copy()
    columns = {"size": np.full(n, 1 << 20, np.int64), "mtime_ns": np.arange(n, dtype=np.int64)}
    return VideoTable(path_bytes, offsets, columns)


def header(dim: int) -> dict:
    return {
        "format": 2,
        "model": {"identity": "benchmark", "embed_dim": dim, "precisions": []},
        "data": {},
        "inputs": [],
        "failures": [],
    }


def write_synthetic(folder: Path, n: int, dim: int, dtype: str, legacy: bool) -> None:
    from text4vis.index_store import write_index

    vectors = unit_vectors(n, dim, seed=0).astype(dtype)
    table = synthetic_table(n)
    write_index(folder / "current", header(dim), vectors, table)
    if legacy:
        from safetensors.numpy import save_file

        old = folder / "format1"
        old.mkdir()
        save_file({"embeddings": vectors.astype(np.float32)}, str(old / "embeddings.safetensors"))
        sizes, mtimes = table.column("size").tolist(), table.column("mtime_ns").tolist()
        meta = header(dim) | {
            "format": 1,
            "videos": [
                {"path": p, "size": s, "mtime_ns": m}
                for p, s, m in zip(table.paths(), sizes, mtimes)
            ],
        }
        (old / "index.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def measure_open(folder: Path) -> dict:
    """In this process: open the index, then one exact query (run in a fresh process)."""
    import text4vis.search as search

    query = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    before = rss_mib()
    start = time.perf_counter()
    index = search.VideoIndex.load(folder)
    opened = time.perf_counter() - start
    after_open = rss_mib()
    start = time.perf_counter()
    index.search_vectors(query[:, : index.embeddings.shape[1]], top_k=10)
    first = time.perf_counter() - start
    start = time.perf_counter()
    index.search_vectors(-query[:, : index.embeddings.shape[1]], top_k=10)
    second = time.perf_counter() - start
    return {
        "second_query_s": second,
        "open_s": opened,
        "rss_before_mib": before,
        "rss_after_open_mib": after_open,
        "first_query_s": first,
        "rss_after_query_mib": rss_mib(),
        "matrix_mib": index.embeddings.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--legacy", action="store_true", help="also open a format-1 index")
    parser.add_argument("--measure", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_open(Path(args.measure))))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, 1-minute load "
        f"{os.getloadavg()[0]:.1f}, commit {git_commit()}"
    )
    print(
        "| N | format | open s | RSS before open MiB | + open MiB | first query s "
        "| + first query MiB | second query s | matrix MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("INDEX_BENCH_DIR")) as tmp:
            write_synthetic(Path(tmp), n, args.dim, args.dtype, args.legacy)
            kinds = ["current", "format1"] if args.legacy else ["current"]
            for kind in kinds:
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", str(Path(tmp) / kind)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                r = json.loads(out.strip().splitlines()[-1])
                name = f"2 ({args.dtype})" if kind == "current" else "1 (JSON rows)"
                print(
                    f"| {n:,} | {name} | {r['open_s']:.3f} | {r['rss_before_mib']:.0f} | "
                    f"{r['rss_after_open_mib'] - r['rss_before_mib']:.0f} | "
                    f"{r['first_query_s']:.3f} | "
                    f"{r['rss_after_query_mib'] - r['rss_after_open_mib']:.0f} | "
                    f"{r['second_query_s']:.3f} | "
                    f"{r['matrix_mib']:.0f} |",
                    flush=True,
                )
    print(f"1-minute load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
