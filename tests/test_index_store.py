"""The index's files (format 2): columnar rows, memory-mapped vectors, atomic saves that survive a
kill at any moment, float16 storage, and exact search in blocks."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from fault_driver import FileWrapper
from text4vis import index_store
from text4vis.index_store import VideoTable, read_index, write_index
from text4vis.search import (
    INDEX_FORMAT,
    META_NAME,
    ExactBackend,
    IndexedVideo,
    VideoIndex,
)


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _index(path: Path, n: int, d: int = 16, seed: int = 0, dtype: str = "float32") -> VideoIndex:
    videos = [IndexedVideo(f"/videos/ü{i}/clip {i}.mp4", 100 + i, 7 * i) for i in range(n)]
    meta = {
        "format": INDEX_FORMAT,
        "model": {"identity": "test", "embed_dim": d, "precisions": []},
        "videos": [v.to_dict() for v in videos],
        "failures": [],
    }
    return VideoIndex(path, meta, _unit(n, d, seed).astype(dtype))


def test_video_table_is_a_sequence_of_records_with_further_columns():
    videos = [IndexedVideo(f"/v/é{i}.mp4", i, 10 * i) for i in range(5)]
    table = VideoTable.from_records(videos, start=np.arange(5) * 1.5, end=np.arange(5) * 1.5 + 1)
    assert list(table) == videos and table == videos and len(table) == 5
    assert table[3] == videos[3] and table[-1] == videos[4] and table.path(2) == "/v/é2.mp4"
    assert table[1:4] == videos[1:4] and table.row_of("/v/é4.mp4") == 4
    assert table.row_of("/v/none.mp4") is None
    taken = table.take([4, 0, 2])
    assert taken == [videos[4], videos[0], videos[2]]
    assert taken.column("start").tolist() == [6.0, 0.0, 3.0]
    joined = taken.concat(table.take([1]))
    assert joined == [videos[4], videos[0], videos[2], videos[1]]
    assert joined.column("end").tolist() == [7.0, 1.0, 4.0, 2.5]
    with pytest.raises(IndexError):
        table[5]
    with pytest.raises(ValueError, match="other columns"):
        table.concat(VideoTable.from_records(videos))
    with pytest.raises(KeyError, match="no column 'nope'"):
        table.column("nope")


def test_further_columns_and_float16_go_through_the_files(tmp_path: Path):
    """A segment index adds start/end columns: they are written, memory-mapped and read back."""
    videos = [IndexedVideo(f"/v/{i}.mp4", i, i) for i in range(4)]
    table = VideoTable.from_records(videos, start=[0.0, 2.0, 4.0, 6.0], end=[2.0, 4.0, 6.0, 8.0])
    vectors = _unit(4, 8, 0).astype(np.float16)
    write_index(tmp_path, {"format": 2, "model": {"identity": "x"}}, vectors, table)
    stored = read_index(tmp_path)
    assert isinstance(stored.vectors, np.memmap) and stored.vectors.dtype == np.float16
    np.testing.assert_array_equal(stored.vectors, vectors)
    assert stored.table == videos and stored.table.column("end").tolist() == [2, 4, 6, 8]
    assert stored.header["store"]["dtype"] == "float16"


def test_float16_storage_halves_the_bytes_and_finds_the_same_neighbours(tmp_path: Path):
    index = _index(tmp_path / "i", 3000, d=64)
    exact = index.search_vectors(index.embeddings[:20], top_k=10)
    index.storage = "float16"
    index.save()
    half = VideoIndex.load(tmp_path / "i")
    assert half.storage == "float16" and half.embeddings.nbytes == 3000 * 64 * 2
    found = half.search_vectors(index.embeddings[:20].astype(np.float32), top_k=10)
    # each query is a stored row: it finds itself first, and nearly the same ten
    assert [hits[0].video for hits in found] == [index.videos.path(i) for i in range(20)]
    recall = np.mean(
        [len({h.video for h in a} & {h.video for h in b}) / 10 for a, b in zip(exact, found)]
    )
    assert recall >= 0.95
    np.testing.assert_allclose([h.score for h in found[0]], [h.score for h in exact[0]], atol=2e-3)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_exact_search_in_blocks_is_the_formula(monkeypatch, dtype: str):
    """Blocks of rows (each keeping its top k) give the top k of the formula ``q . v`` over the
    stored vectors (float16 widened to float32 exactly)."""
    vectors = _unit(1000, 24, 3).astype(dtype)
    queries = _unit(6, 24, 4)
    expected = queries @ vectors.astype(np.float32).T  # [Q, N]
    truth = np.argsort(-expected, axis=1, kind="stable")[:, :7]
    for block_bytes in (1 << 20, 4 * 24 * 50, 1):  # one block; blocks of 50 rows; of 1 row
        for gemv_queries in (0, 6):  # one matrix product per block; a GEMV per query
            monkeypatch.setattr(ExactBackend, "BLOCK_BYTES", block_bytes)
            monkeypatch.setattr(ExactBackend, "GEMV_QUERIES", gemv_queries)
            scores, ids = ExactBackend(vectors).search(queries, 7)
            np.testing.assert_array_equal(ids, truth)
            np.testing.assert_allclose(scores, np.take_along_axis(expected, ids, 1), rtol=1e-6)


def test_float16_single_queries_rescored_give_the_widened_answer(monkeypatch):
    """One float16 query goes through the fp16 GEMV and a float32 rescoring of the near-ties:
    the same rows and scores as the widened scan, even among many near-equal scores."""
    base = _unit(1, 32, 0)
    near = base + 0.002 * _unit(3000, 32, 1)  # 3000 rows within a hair of each other
    vectors = np.concatenate([_unit(3000, 32, 2), near / np.linalg.norm(near, axis=1)[:, None]])
    vectors = vectors.astype(np.float16)
    backend = ExactBackend(vectors)
    for query in [base[0], _unit(1, 32, 5)[0]]:
        monkeypatch.setattr(ExactBackend, "SINGLE_ROWS", 1000)  # the GEMV in blocks too
        scores, ids = backend.search(query[None], 10)
        monkeypatch.setattr(ExactBackend, "HALF_GEMV_QUERIES", 0)  # the widened scan
        widened_scores, widened_ids = backend.search(query[None], 10)
        monkeypatch.undo()
        np.testing.assert_array_equal(ids, widened_ids)
        np.testing.assert_allclose(scores, widened_scores, rtol=1e-6)
        expected = vectors.astype(np.float32) @ query
        assert ids[0].tolist() == np.argsort(-expected, kind="stable")[:10].tolist()


def test_opening_maps_the_vectors_and_reads_no_row_until_asked(tmp_path: Path):
    _index(tmp_path / "i", 50).save()
    index = VideoIndex.load(tmp_path / "i")
    assert isinstance(index.embeddings, np.memmap)
    assert index.videos._rows is None  # the path -> row map is built on first use
    hits = index.search_vectors(index.embeddings[7:8], top_k=1)
    assert hits[0][0].video == "/videos/ü7/clip 7.mp4" and index.videos._rows is None
    assert index.row_of("/videos/ü7/clip 7.mp4") == 7


def test_a_save_leaves_one_generation_and_a_damaged_store_is_named(tmp_path: Path):
    index = _index(tmp_path / "i", 10)
    index.save()
    index.save()
    names = sorted(p.name for p in (tmp_path / "i").iterdir())
    assert names == [META_NAME, "v000002"]
    header = json.loads((tmp_path / "i" / META_NAME).read_text())
    (tmp_path / "i" / header["store"]["folder"] / "vectors.npy").unlink()
    with pytest.raises(Exception, match=r"v000002.*cannot be read.*--rebuild"):
        VideoIndex.load(tmp_path / "i")


def test_a_full_disk_leaves_the_previous_index_and_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import errno

    index = _index(tmp_path / "i", 30)
    index.save()
    before = sorted(p.name for p in (tmp_path / "i").iterdir())
    real_open = index_store._open_for_write
    opened: list[Path] = []

    def full_disk(path: Path):
        opened.append(path)
        if len(opened) == 3:  # the third file of the save
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path)

    monkeypatch.setattr(index_store, "_open_for_write", full_disk)
    index.embeddings = index.embeddings[:10]
    index.info.videos = index.videos[:10]
    with pytest.raises(OSError, match="No space left"):
        index.save()
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == before
    assert len(VideoIndex.load(tmp_path / "i")) == 30


class _DyingFile(FileWrapper):
    """A file of the save that SIGKILLs the process once the save has written ``budget[0]``
    bytes over all its files."""

    def __init__(self, handle, budget: list[int]) -> None:
        super().__init__(handle)
        self.budget = budget

    def before_write(self, data) -> None:
        if len(data) >= self.budget[0]:
            self.handle.write(bytes(memoryview(data)[: self.budget[0]]))
            self.handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self.budget[0] -= len(data)


def _save_in_child(folder: Path, kill_at: tuple[str, int]) -> int:
    """Fork a process that opens the index, appends 40 rows and saves it, killed at ``kill_at``:
    ``("byte", n)`` after n bytes of the save, or ``(call, k)`` at the k-th call of ``os.replace``
    (the switch) or ``shutil.rmtree`` (removing the old generation, after the switch)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            kind, value = kill_at
            if kind == "byte":
                budget = [value]
                real_open = index_store._open_for_write
                index_store._open_for_write = lambda path: _DyingFile(real_open(path), budget)
            else:
                module = os if kind == "replace" else shutil
                real = getattr(module, kind)
                calls = [0]

                def counted(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == value:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real(*args, **kwargs)

                setattr(index_store.os if kind == "replace" else index_store.shutil, kind, counted)
            index = VideoIndex.load(folder)
            index.embeddings = np.concatenate([index.embeddings, _unit(40, 16, 99)])
            index.info.videos = index.videos.concat(
                [IndexedVideo(f"/new/{i}.mp4", 1, 1) for i in range(40)]
            )
            index.save()
            status = 0
        finally:
            os._exit(status)
    return pid


@pytest.mark.process
def test_a_writer_killed_at_any_moment_of_a_save_leaves_an_index_that_opens(tmp_path: Path):
    """Real processes killed while saving: at 16 random byte offsets of everything the save
    writes, at the switch and while removing the old generation. Each time the index opens and
    searches: the old rows before the switch, the new ones after it; the next save removes
    what the killed writer left."""
    folder = tmp_path / "index"
    old = _index(folder, 200)
    old.save()
    probe = old.embeddings[123:124].copy()
    # the bytes a save of 240 rows writes: measured on a copy
    scratch = _index(tmp_path / "scratch", 240)
    scratch.save()
    total = sum(p.stat().st_size for p in (tmp_path / "scratch").rglob("*") if p.is_file())
    rng = random.Random(7)
    points = [("byte", n) for n in sorted(rng.randrange(0, total) for _ in range(16))]
    points += [("replace", 1), ("rmtree", 1)]
    for kill_at in points:
        _, status = os.waitpid(_save_in_child(folder, kill_at), 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, kill_at
        index = VideoIndex.load(folder)
        switched = kill_at == ("rmtree", 1)
        assert len(index) == (240 if switched else 200), kill_at
        hit = index.search_vectors(probe, top_k=1)[0][0]
        assert hit.video == "/videos/ü123/clip 123.mp4" and hit.score == pytest.approx(1.0)
        if switched:  # back to the old rows for the next trial
            old.save()
    old.save()
    current = json.loads((folder / META_NAME).read_text())["store"]["folder"]
    assert sorted(p.name for p in folder.iterdir()) == [META_NAME, current]
