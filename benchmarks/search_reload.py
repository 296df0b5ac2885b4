"""Opening a saved index with an approximate backend: FAISS index built again vs read back.

A saved index keeps the FAISS index of its first approximate search (``backend-<name>.faiss``);
this measures what that saves on every later ``text4vis search --backend ...``: the time from
``VideoIndex.load`` to the first answer, with the FAISS index built from the embeddings (its
saved file deleted first) against read from the folder, in alternating rounds of one process,
on the same clustered vectors as ``benchmarks/search.py``.

    .venv/bin/python benchmarks/search_reload.py --sizes 100000 1000000 --rounds 3
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as benchmarks/search.py, before faiss loads

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import clustered_vectors, git_commit  # noqa: E402
from text4vis.search import INDEX_FORMAT, VideoIndex  # noqa: E402


def first_answer_s(path: Path, backend: str, queries: np.ndarray) -> float:
    """Seconds from opening the index to the answer of its first query."""
    start = time.perf_counter()
    index = VideoIndex.load(path, backend=backend)
    index.search_vectors(queries[:1], top_k=10)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--backend", default="faiss-ivf", choices=["faiss-ivf", "faiss-hnsw"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="faiss threads (1)")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, faiss threads {args.threads}, "
        f"1-minute load {os.getloadavg()[0]:.1f}, commit {git_commit()}"
    )
    print("| N | backend | built: s to first answer | read: s to first answer | ratio |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        vectors = clustered_vectors(n, args.dim, seed=0)
        queries = clustered_vectors(10, args.dim, seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index"
            meta = {
                "format": INDEX_FORMAT,
                "model": {"identity": "benchmark", "embed_dim": args.dim, "precisions": []},
                "videos": [{"path": f"/v{i}.mp4", "size": 1, "mtime_ns": 1} for i in range(n)],
                "failures": [],
            }
            VideoIndex(path, meta, vectors).save()
            del vectors
            saved = path / f"backend-{args.backend}.faiss"
            built, read = [], []
            for _ in range(args.rounds):
                saved.unlink(missing_ok=True)
                built.append(first_answer_s(path, args.backend, queries))  # builds and saves
                assert saved.is_file()
                read.append(first_answer_s(path, args.backend, queries))
            b, r = statistics.median(built), statistics.median(read)
            print(
                f"| {n:,} | {args.backend} | {b:.2f} [{min(built):.2f}-{max(built):.2f}] | "
                f"{r:.2f} [{min(read):.2f}-{max(read):.2f}] | {b / r:.1f}x |",
                flush=True,
            )
    print(f"1-minute load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
