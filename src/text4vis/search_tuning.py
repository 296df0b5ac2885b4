"""Tuning an approximate index on the user's own vectors: the smallest ``nprobe`` that reaches a
target recall@k, measured with held-out queries drawn from the index.

A query is a stored row; its true neighbours are the exact top k of the other rows (the row
itself left out), and the approximate index is asked the same way, so the recall is that of the
searches a user makes with videos like the ones indexed. The latency is measured at the chosen
setting, one query at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from text4vis.errors import UsageError

__all__ = ["IVFTuning", "tune_nprobe"]

logger = logging.getLogger("text4vis.search")


@dataclass(frozen=True)
class IVFTuning:
    """What tuning an IVF index reached (saved beside the FAISS file, logged at the build)."""

    nlist: int  # k-means cells
    nprobe: int  # cells scanned per query
    target_recall: float  # what was asked
    recall: float  # recall@k reached on the held-out queries
    k: int
    queries: int  # held-out queries drawn from the index
    latency_ms: float  # median per single query at this nprobe

    @property
    def reached(self) -> bool:
        return self.recall >= self.target_recall

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line for people."""
        note = "" if self.reached else f" (below the target {self.target_recall:.2f}: every cell)"
        return (
            f"faiss-ivf: {self.nlist} cells, nprobe {self.nprobe}: recall@{self.k} "
            f"{self.recall:.3f} on {self.queries} queries drawn from the index, "
            f"{self.latency_ms:.2f} ms per query{note}"
        )


def _recall_without_self(found: np.ndarray, truth: np.ndarray, rows: np.ndarray, k: int) -> float:
    """Mean recall@k of ``found`` against ``truth`` (``[Q, k + 1]`` ids each), leaving out each
    query's own row."""
    total = 0.0
    for row, found_ids, true_ids in zip(rows, found, truth):
        true_set = [i for i in true_ids if i != row][:k]
        found_set = {i for i in found_ids if i != row and i >= 0}
        total += len(found_set.intersection(true_set)) / max(1, len(true_set))
    return total / max(1, len(rows))


def tune_nprobe(
    index: Any,
    vectors: np.ndarray,
    target_recall: float,
    *,
    exact: Any,
    k: int = 10,
    num_queries: int = 200,
    seed: int = 0,
) -> IVFTuning:
    """The smallest power-of-two ``nprobe`` (up to every cell) whose recall@k reaches
    ``target_recall`` on ``num_queries`` rows of ``vectors`` used as queries; sets it on
    ``index`` (a FAISS IVF index over ``vectors``). ``exact`` is the exact search over the same
    vectors (:class:`text4vis.search.ExactBackend`): it gives the true neighbours.

    Raises:
        ValueError: a target outside (0, 1].
    """
    if not 0.0 < target_recall <= 1.0:
        raise UsageError(f"--recall must be in (0, 1], got {target_recall}; e.g. --recall 0.95")
    n = len(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(num_queries, n), replace=False))
    queries = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    depth = min(k + 1, n)
    truth = exact.search(queries, depth)[1]
    nprobe, recall = 1, 0.0
    while True:
        index.nprobe = nprobe
        found = index.search(queries, depth)[1]
        recall = _recall_without_self(found, truth, rows, k)
        if recall >= target_recall or nprobe >= index.nlist:
            break
        nprobe = min(2 * nprobe, int(index.nlist))
    latencies = []
    for query in queries[:50]:
        start = time.perf_counter()
        index.search(query[None], k)
        latencies.append(time.perf_counter() - start)
    tuning = IVFTuning(
        nlist=int(index.nlist),
        nprobe=int(nprobe),
        target_recall=float(target_recall),
        recall=float(recall),
        k=k,
        queries=len(rows),
        latency_ms=statistics.median(latencies) * 1e3,
    )
    (logger.info if tuning.reached else logger.warning)("%s", tuning.describe())
    return tuning
