"""An index of 10^7 vectors on one machine: float16 exact search, written and opened as the index
stores it.

``N x D`` clustered unit vectors (``benchmarks/search.py``'s) are written block by block as
float16 into an index folder (:func:`text4vis.index_store.write_index` layout, made-up paths),
so nothing of size ``N x D`` float32 is ever held; then :meth:`VideoIndex.load` opens it and
exact search answers single queries. Reported: seconds to write, to open, one streaming read of
the matrix and single-query latency (median of ``--queries``, page cache warm after the first),
and recall@10 of the float16 search against float32 exact scores (``--recall-queries`` held-out
queries, the float32 top 10 kept block by block as the blocks are generated). ``--ivfpq NLIST,M``
also builds FAISS IVF-PQ from the same float32 rows and reports its recall and latency.

    .venv/bin/python benchmarks/index_scale.py --size 10000000
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_open import header, rss_mib, synthetic_table  # noqa: E402
from search import clustered_vectors, git_commit  # noqa: E402
from search_exact import streaming_read  # noqa: E402


class _Blocks:
    """A lazily generated ``[N, D]`` float16 matrix that :func:`write_index` writes in blocks.

    Each block is generated in float32 from its own seed and rounded to float16. The first time
    a block is generated, the float32 scores of ``queries`` against it are kept as its top
    ``k`` (the float32 ground truth), so recall needs no second pass over 10^7 vectors."""

    def __init__(self, n: int, dim: int, queries: np.ndarray, k: int, block: int = 65_536) -> None:
        self.shape, self.dtype, self.ndim = (n, dim), np.dtype(np.float16), 2
        self.itemsize, self.block = 2, block
        self.queries, self.k = queries, k
        self._truth: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # first row -> [Q, k] each

    def __len__(self) -> int:
        return self.shape[0]

    def float32_block(self, first: int) -> np.ndarray:
        """Rows ``first : first + block`` in float32, before rounding (``first`` a multiple of
        the block); records their top-k against the queries."""
        seed = 1000 + first // self.block
        rows = clustered_vectors(self.block, self.shape[1], seed=seed)
        rows = rows[: max(0, min(self.block, self.shape[0] - first))]
        if first not in self._truth:
            scores = self.queries @ rows.T  # [Q, b]
            k = min(self.k, len(rows))
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            self._truth[first] = (np.take_along_axis(scores, top, 1), top + first)
        return rows

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop = item.start or 0, min(item.stop, self.shape[0])
        parts = []
        for first in range(start - start % self.block, stop, self.block):
            block = self.float32_block(first).astype(np.float16)
            lo, hi = max(start - first, 0), min(stop - first, self.block)
            parts.append(block[lo:hi])
        return np.concatenate(parts)

    def truth(self) -> np.ndarray:
        """Row ids ``[Q, k]`` of the float32 top k over every block generated so far."""
        scores = np.concatenate([self._truth[f][0] for f in sorted(self._truth)], axis=1)
        ids = np.concatenate([self._truth[f][1] for f in sorted(self._truth)], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        return np.take_along_axis(ids, order, 1)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true top k found in its returned top k."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def ivfpq(
    matrix: _Blocks,
    stored: np.ndarray,
    truth: np.ndarray,
    nlist: int,
    m: int,
    nprobes: list[int],
    reranks: list[int],
) -> None:
    """Build FAISS IVF-PQ (``nlist`` cells, ``m`` bytes per vector) from the same float32 rows
    block by block, and print build time, memory of the codes, and recall@k / latency per nprobe
    against the float32 truth: the PQ scores alone (rerank 0), and the best ``R`` PQ candidates
    scored again exactly from the ``stored`` (memory-mapped float16) rows."""
    import faiss

    n, dim = matrix.shape
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    sample_blocks = max(1, -(-40 * nlist // matrix.block))  # FAISS asks for >= 39 rows per cell
    start = time.perf_counter()
    sample = np.concatenate([matrix.float32_block(b * matrix.block) for b in range(sample_blocks)])[
        : max(40 * nlist, 256 * 40)
    ]
    index.train(sample)
    trained = time.perf_counter() - start
    for first in range(0, n, matrix.block):
        index.add(matrix.float32_block(first))
    built = time.perf_counter() - start
    codes_mib = index.invlists.compute_ntotal() * (m + 8) / 2**20  # code + id per vector
    print(
        f"IVF-PQ nlist {nlist}, m {m} x 8 bits: train {trained:.0f} s on {len(sample):,} rows, "
        f"build {built:.0f} s in all, codes + ids {codes_mib:.0f} MiB"
    )
    print("| nprobe | rerank R | recall@10 vs float32 | ms/query (1 at a time) |")
    print("|---|---|---|---|")
    for nprobe in nprobes:
        index.nprobe = nprobe
        for rerank in reranks:
            found, times = [], []
            for query in matrix.queries:
                start = time.perf_counter()
                _, ids = index.search(query[None], max(rerank, matrix.k))
                ids = ids[0][ids[0] >= 0]
                if rerank:
                    exact = stored[np.sort(ids)].astype(np.float32) @ query
                    ids = np.sort(ids)[np.argsort(-exact, kind="stable")]
                times.append(time.perf_counter() - start)
                found.append(ids[: matrix.k])
            print(
                f"| {nprobe} | {rerank} | {recall_at(np.array(found), truth):.3f} | "
                f"{1000 * statistics.median(times):.1f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=5, help="timed single queries")
    parser.add_argument("--recall-queries", type=int, default=100)
    parser.add_argument(
        "--ivfpq",
        metavar="NLIST,M",
        help="also build FAISS IVF-PQ from the same rows (e.g. 4096,64) and report its recall",
    )
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument(
        "--rerank", type=int, nargs="+", default=[0, 100, 1000], help="candidates scored again"
    )
    args = parser.parse_args()
    from text4vis import index_store
    from text4vis.search import VideoIndex

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, 1 thread, 1-minute load "
        f"{os.getloadavg()[0]:.1f}, commit {git_commit()}, N {args.size:,} x {args.dim} float16"
    )
    with tempfile.TemporaryDirectory(dir=os.environ.get("INDEX_BENCH_DIR")) as tmp:
        folder = Path(tmp) / "index"
        recall_queries = clustered_vectors(args.recall_queries, args.dim, seed=2)
        matrix = _Blocks(args.size, args.dim, recall_queries, k=10)
        start = time.perf_counter()
        index_store.write_index(folder, header(args.dim), matrix, synthetic_table(args.size))
        written = time.perf_counter() - start
        before = rss_mib()
        start = time.perf_counter()
        index = VideoIndex.load(folder)
        opened = time.perf_counter() - start
        opened_mib = rss_mib() - before
        queries = clustered_vectors(args.queries + 1, args.dim, seed=1)
        index.search_vectors(queries[-1:], top_k=10)  # imports torch, maps the pages
        read_s = []
        query_s = []
        for query in queries[: args.queries]:
            start = time.perf_counter()
            streaming_read(index.embeddings)
            read_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            hits = index.search_vectors(query[None], top_k=10)
            query_s.append(time.perf_counter() - start)
        assert len(hits[0]) == 10
        truth = matrix.truth()
        found = np.concatenate(
            [
                index.backend().search(recall_queries[i : i + 8], 10)[1]
                for i in range(0, len(recall_queries), 8)
            ]
        )
        recall = recall_at(found, truth)
        read, latency = statistics.median(read_s), statistics.median(query_s)
        print(
            "| N | stored GiB | write s | open s | + open MiB | read s | 1 query s | x read "
            "| recall@10 vs float32 |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        print(
            f"| {args.size:,} | {index.embeddings.nbytes / 2**30:.1f} | {written:.0f} | "
            f"{opened:.3f} | {opened_mib:.0f} | {read:.2f} | {latency:.2f} | "
            f"{latency / read:.2f}x | {recall:.3f} |"
        )
    if args.ivfpq:
        nlist, m = (int(v) for v in args.ivfpq.split(","))
        ivfpq(matrix, index.embeddings, truth, nlist, m, args.nprobe, args.rerank)
    print(f"1-minute load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
