"""Finding videos and frame folders to label."""

from __future__ import annotations

from pathlib import Path

import pytest

from text4vis.data.discovery import NoVideosFoundError, find_videos


def test_find_videos(tmp_path: Path) -> None:
    (tmp_path / "b" / "clip_frames").mkdir(parents=True)
    (tmp_path / "b" / "clip_frames" / "img_00001.jpg").write_bytes(b"x")
    (tmp_path / "b" / "clip_frames" / "nested.mp4").write_bytes(b"x")  # inside a clip: not listed
    (tmp_path / "a.MP4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.mp4").write_bytes(b"x")
    (tmp_path / "b" / "z.webm").write_bytes(b"x")
    found = find_videos([tmp_path, tmp_path / "a.MP4", "missing.avi"])
    names = [str(Path(p).relative_to(tmp_path)) if p != "missing.avi" else p for p in found]
    assert names == ["a.MP4", "b/clip_frames", "b/z.webm", "missing.avi"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoVideosFoundError, match="no videos found"):
        find_videos([tmp_path / "empty"])
