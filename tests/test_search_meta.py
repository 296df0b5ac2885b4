"""index.json as a dataclass: files written by earlier versions load, and are written back in the
current format with what they said (unknown keys kept)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from text4vis.search import (
    EMBEDDINGS_NAME,
    INDEX_FORMAT,
    META_NAME,
    IndexMeta,
    VideoIndex,
    VideoIndexError,
)


def _first_version_meta(num_videos: int) -> dict[str, Any]:
    """index.json as the first version of the index wrote it (no ``model.precisions``), with a
    key at each level that this version does not know."""
    return {
        "format": 1,
        "model": {
            "identity": "abc123",
            "embed_dim": 4,
            "arch": "tiny",
            "source": "/models/m",
            "added_later": 7,
        },
        "data": {"num_segments": 8, "views": "1x1"},
        "inputs": ["/videos"],
        "videos": [
            {"path": f"/videos/v{i}.mp4", "size": 10 + i, "mtime_ns": 100 + i}
            for i in range(num_videos)
        ],
        "failures": [{"path": "/videos/broken.mp4", "reason": "cannot decode"}],
        "note": {"written by": "a later text4vis"},
    }


def _write_index(folder: Path, meta: dict[str, Any], vectors: np.ndarray) -> None:
    folder.mkdir(parents=True)
    save_file({"embeddings": vectors}, str(folder / EMBEDDINGS_NAME))
    (folder / META_NAME).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def test_an_index_of_the_first_format_loads_and_is_written_back_as_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    meta = _first_version_meta(3)
    vectors = np.eye(3, 4, dtype=np.float32)
    _write_index(tmp_path / "old", meta, vectors)
    index = VideoIndex.load(tmp_path / "old")
    assert index.info.model.identity == "abc123" and index.info.model.precisions is None
    assert [v.path for v in index.videos] == [f"/videos/v{i}.mp4" for i in range(3)]
    assert index.videos[2].size == 12 and index.videos[2].mtime_ns == 102
    assert [f.path for f in index.failures] == ["/videos/broken.mp4"]
    assert index.info.inputs == ["/videos"] and index.info.data["views"] == "1x1"
    hits = index.search_vectors(vectors[1:2], top_k=1)[0]
    assert hits[0].video == "/videos/v1.mp4" and hits[0].score == pytest.approx(1.0)
    # Written again (in the current format), the index says what it said: unknown keys kept,
    # no precisions invented; the rows are columns, not JSON, and format 1's file is gone.
    assert index.meta == meta
    with caplog.at_level("INFO", logger="text4vis.index_store"):
        index.save()
    assert "converted from format 1 to format 2" in caplog.text
    header = json.loads((tmp_path / "old" / META_NAME).read_text())
    assert header["format"] == INDEX_FORMAT == 2 and "videos" not in header
    assert header["note"] == meta["note"] and header["model"] == meta["model"]
    assert header["store"]["rows"] == 3 and header["store"]["dtype"] == "float32"
    assert not (tmp_path / "old" / EMBEDDINGS_NAME).exists()
    again = VideoIndex.load(tmp_path / "old")
    assert again.meta == meta | {"format": INDEX_FORMAT}
    assert isinstance(again.embeddings, np.memmap)  # format 2 maps the vectors
    np.testing.assert_array_equal(again.embeddings, vectors)
    # The record of precisions starts when embeddings are made at one.
    index._record_precision("int8")
    index._record_precision("int8")
    assert index.meta["model"]["precisions"] == ["int8"]
    assert meta["model"].get("precisions") is None  # the dict given was not changed


def test_meta_is_a_copy_and_the_typed_record_is_the_state(tmp_path: Path):
    index = VideoIndex(tmp_path / "i", _first_version_meta(2), np.eye(2, 4, dtype=np.float32))
    index.meta["model"]["source"] = "elsewhere"  # a copy: the index is unchanged
    assert index.info.model.source == "/models/m"
    index.info.model.source = "elsewhere"
    index.info.videos = index.info.videos[:1]
    index.embeddings = index.embeddings[:1]
    index.save()
    saved = VideoIndex.load(tmp_path / "i").meta
    assert saved["model"]["source"] == "elsewhere" and len(saved["videos"]) == 1
    assert IndexMeta.from_dict(saved).to_dict() == saved


@pytest.mark.parametrize(
    ("drop", "named"), [("videos", "'videos'"), ("identity", "'model.identity'")]
)
def test_a_damaged_index_file_names_the_file_and_the_missing_key(
    tmp_path: Path, drop: str, named: str
):
    meta = _first_version_meta(1)
    if drop == "videos":
        del meta["videos"]
    else:
        del meta["model"]["identity"]
    _write_index(tmp_path / "bad", meta, np.eye(1, 4, dtype=np.float32))
    with pytest.raises(VideoIndexError, match=rf"{META_NAME}: no {named}.*--rebuild"):
        VideoIndex.load(tmp_path / "bad")
