"""faiss-ivf tuned for a recall on the index's own vectors: the smallest nprobe that reaches it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from text4vis.search import INDEX_FORMAT, ExactBackend, FaissIVFBackend, VideoIndex
from text4vis.search_tuning import _recall_without_self

pytest.importorskip("faiss")


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    centres = np.random.default_rng(0).standard_normal((50, d))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, 50, n)] + 0.6 * rng.standard_normal((n, d))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_nprobe_is_the_smallest_power_of_two_reaching_the_recall():
    vectors = _clustered(6000, 32, 1)
    backend = FaissIVFBackend(vectors, recall=0.9)
    tuning = backend.tuning
    assert tuning.nlist == round(math.sqrt(6000)) and backend._index.nprobe == tuning.nprobe
    assert tuning.recall >= 0.9 and tuning.reached and tuning.queries == 200
    assert tuning.latency_ms > 0 and "recall@10" in tuning.describe()
    # the same measurement restated: rows drawn with the seed, self left out
    rows = np.sort(np.random.default_rng(0).choice(6000, 200, replace=False))
    truth = ExactBackend(vectors).search(vectors[rows], 11)[1]

    def recall_at(nprobe: int) -> float:
        backend._index.nprobe = nprobe
        return _recall_without_self(backend._index.search(vectors[rows], 11)[1], truth, rows, 10)

    assert recall_at(tuning.nprobe) == pytest.approx(tuning.recall)
    if tuning.nprobe > 1:
        assert recall_at(tuning.nprobe // 2) < 0.9
    # an unreachable target scans every cell and says so
    strict = FaissIVFBackend(vectors, nlist=8, recall=1.0)
    assert strict.tuning.nprobe == 8 and strict.tuning.recall == pytest.approx(1.0)


def test_the_tuning_is_saved_with_the_faiss_index_and_read_back(tmp_path: Path, monkeypatch):
    vectors = _clustered(3000, 16, 2)
    meta = {
        "format": INDEX_FORMAT,
        "model": {"identity": "t", "embed_dim": 16, "precisions": []},
        "videos": [{"path": f"/v{i}.mp4", "size": 1, "mtime_ns": 1} for i in range(3000)],
    }
    options = {"recall": 0.9}
    VideoIndex(tmp_path / "i", meta, vectors).save()
    built = VideoIndex.load(tmp_path / "i", backend="faiss-ivf", backend_options=options)
    first = built.backend().tuning
    monkeypatch.setattr(FaissIVFBackend, "__init__", lambda *a, **k: pytest.fail("built again"))
    read = VideoIndex.load(tmp_path / "i", backend="faiss-ivf", backend_options=options)
    assert read.backend().tuning == first
    assert read.backend()._index.nprobe == first.nprobe
    hits = read.search_vectors(vectors[:1], top_k=1)[0]
    assert hits[0].video == "/v0.mp4"
