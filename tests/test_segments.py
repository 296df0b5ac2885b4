"""Moments found by text: a segment index (``text4vis index --segments``) and its search.

The checks reuse the timeline's model whose answers are known by construction (see
``tests/test_timeline.py``): its embedding of a window is how much of the frames each of the four
object colours covers, and its classifier holds one row per colour, so a class's text finds the
windows of that colour's clip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import text4vis.search as search_module
from test_timeline import ACTIONS, FPS, action_frames, colour_predictor
from text4vis.cli import main
from text4vis.data.streams import plan_windows
from text4vis.data.synthetic import write_mp4
from text4vis.errors import UsageError
from text4vis.search import SearchHit, VideoIndex, parse_video_span

ORDER = ["red", "blue", "green", "yellow"]
CLIP_SECONDS = 3.0
WINDOW, STRIDE = 2.0, 1.0


@pytest.fixture(scope="module")
def predictor() -> Any:
    return colour_predictor(batch_size=4)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``long.mp4``: four 3 s clips of different colours back to back (12 s); ``short.mp4``: a
    4 s clip of one colour. Both 10 fps."""
    folder = tmp_path_factory.mktemp("segments")
    frames = np.concatenate([action_frames(c, CLIP_SECONDS, seed) for seed, c in enumerate(ORDER)])
    long_path = folder / "long.mp4"
    write_mp4(long_path, frames, fps=FPS, preset="ultrafast", crf=12)
    short_path = folder / "short.mp4"
    write_mp4(short_path, action_frames("blue", 4.0, 9), fps=FPS, preset="ultrafast", crf=12)
    spans = {c: (i * CLIP_SECONDS, (i + 1) * CLIP_SECONDS) for i, c in enumerate(ORDER)}
    return {
        "folder": folder,
        "long": long_path.resolve(),
        "short": short_path.resolve(),
        "spans": spans,
    }


def _rows_of(index: VideoIndex, path: Path) -> list[int]:
    return index.videos.rows_of(str(path))


def test_video_spans_are_parsed_and_checked(tmp_path: Path) -> None:
    assert parse_video_span("a.mp4@30-38") == ("a.mp4", (30.0, 38.0))
    assert parse_video_span("dir/a.mp4@1.5-2.25") == ("dir/a.mp4", (1.5, 2.25))
    assert parse_video_span("a.mp4") == ("a.mp4", None)
    named = tmp_path / "x@1-2.mp4"  # an existing file whose name holds '@' is a whole video
    named.write_bytes(b"")
    assert parse_video_span(named) == (str(named), None)
    for bad in ("a.mp4@8-3", "a.mp4@x-3", "a.mp4@3", "a.mp4@-1-2"):
        with pytest.raises(UsageError, match="VIDEO@START-END"):
            parse_video_span(bad)


def test_a_class_text_finds_its_clip_in_the_long_video(
    predictor: Any, videos: dict[str, Any], tmp_path: Path
) -> None:
    index = VideoIndex.build(
        [videos["long"]], predictor, tmp_path / "idx", segments=WINDOW, stride=STRIDE
    )
    duration = len(ORDER) * CLIP_SECONDS
    planned = plan_windows(duration, WINDOW, STRIDE)
    starts, ends = index.videos.column("start"), index.videos.column("end")
    np.testing.assert_allclose(np.stack([starts, ends], 1), np.array(planned), atol=1e-6)
    assert index.last_update.rows_embedded == len(planned) == len(index)
    assert index.last_update.embedded == 1  # one video, read once
    reopened = VideoIndex.load(tmp_path / "idx", predictor)  # the columns and settings persist
    assert reopened.segments == {"window": WINDOW, "stride": STRIDE}
    assert reopened.videos.column("start").tolist() == starts.tolist()
    for colour, (true_start, true_end) in videos["spans"].items():
        (hit,) = reopened.search(text=ACTIONS[colour].name, top_k=1)
        assert hit.video == str(videos["long"])
        # The top window lies within the clip, give or take one stride.
        assert true_start - STRIDE <= hit.start < hit.end <= true_end + STRIDE, (colour, hit)
        assert hit.to_dict().keys() == {"rank", "video", "score", "start", "end"}


def test_like_a_segment_finds_that_clip(
    predictor: Any, videos: dict[str, Any], tmp_path: Path
) -> None:
    index = VideoIndex.build(
        [videos["long"], videos["short"]],
        predictor,
        tmp_path / "idx",
        segments=WINDOW,
        stride=STRIDE,
    )
    green_start, green_end = videos["spans"]["green"]
    hits = index.search(like=f"{videos['long']}@{green_start + 0.5}-{green_end - 0.5}", top_k=2)
    for hit in hits:
        assert hit.video == str(videos["long"])
        assert green_start - STRIDE <= hit.start < hit.end <= green_end + STRIDE, hit
    # The short video is all blue: a segment of it finds blue windows of the long one too.
    blue_start, blue_end = videos["spans"]["blue"]
    hits = index.search(like=f"{videos['short']}@0-2", top_k=6)
    long_hits = [h for h in hits if h.video == str(videos["long"])]
    assert long_hits and all(
        blue_start - STRIDE <= h.start < h.end <= blue_end + STRIDE for h in long_hits[:1]
    )
    # A whole indexed video needs no model: the mean of its stored segments.
    index._predictor = None
    (hit,) = index.search(like=videos["short"], top_k=1)
    assert hit.video == str(videos["short"])
    with pytest.raises(search_module.VideoIndexError, match="needs the model"):
        index.search(like=f"{videos['short']}@0-2")


def test_a_changed_file_re_embeds_only_its_own_segments(
    predictor: Any, videos: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    long_copy, short_copy = folder / "long.mp4", folder / "short.mp4"
    long_copy.write_bytes(videos["long"].read_bytes())
    short_copy.write_bytes(videos["short"].read_bytes())
    index = VideoIndex.build([folder], predictor, tmp_path / "idx", segments=WINDOW, stride=STRIDE)
    long_rows = _rows_of(index, long_copy.resolve())
    long_vectors = np.asarray(index.embeddings[long_rows]).copy()
    short_before = len(_rows_of(index, short_copy.resolve()))
    assert len(long_rows) == len(plan_windows(12.0, WINDOW, STRIDE))
    assert short_before == len(plan_windows(4.0, WINDOW, STRIDE))

    read: list[str] = []
    original = predictor.embed_windows

    def counting(video: str, *args: Any, **kwargs: Any) -> Any:
        read.append(str(Path(video).resolve()))
        return original(video, *args, **kwargs)

    monkeypatch.setattr(predictor, "embed_windows", counting)
    # The short clip becomes 6 s of red: its own rows are replaced, the long video's are kept.
    write_mp4(short_copy, action_frames("red", 6.0, 3), fps=FPS, preset="ultrafast", crf=12)
    os.utime(short_copy, ns=(1, 2_000_000_000))
    reopened = VideoIndex.load(tmp_path / "idx", predictor)
    report = reopened.update()
    assert read == [str(short_copy.resolve())]
    assert report.changed == [str(short_copy.resolve())] and report.unchanged == 1
    assert report.embedded == 1
    assert report.rows_embedded == len(plan_windows(6.0, WINDOW, STRIDE))
    short_rows = _rows_of(reopened, short_copy.resolve())
    assert len(short_rows) == report.rows_embedded  # the 4 s clip's rows are all gone
    new_long_rows = _rows_of(reopened, long_copy.resolve())
    np.testing.assert_array_equal(np.asarray(reopened.embeddings[new_long_rows]), long_vectors)
    assert len(reopened) == len(long_rows) + report.rows_embedded
    (hit,) = reopened.search(text=ACTIONS["red"].name, top_k=1)
    assert hit.video in {str(short_copy.resolve()), str(long_copy.resolve())}
    # Other segment settings are refused; the index's own (or none) are taken.
    reopened.check_segments(None)
    reopened.check_segments(WINDOW, STRIDE)
    with pytest.raises(UsageError, match="--rebuild"):
        reopened.check_segments(3.0)


def test_a_plain_index_still_holds_whole_videos(
    predictor: Any, videos: dict[str, Any], tmp_path: Path
) -> None:
    index = VideoIndex.build([videos["long"], videos["short"]], predictor, tmp_path / "idx")
    assert len(index) == 2 and index.segments is None
    assert set(index.videos.columns) == {"size", "mtime_ns"}
    header = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert "segments" not in header
    (hit,) = index.search(text=ACTIONS["blue"].name, top_k=1)
    assert hit == SearchHit(1, str(videos["short"]), hit.score)  # all blue beats a quarter
    assert hit.start is None and hit.end is None
    assert hit.to_dict().keys() == {"rank", "video", "score"}
    with pytest.raises(UsageError, match="whole videos"):
        index.check_segments(WINDOW, STRIDE)


def test_cli_index_segments_search_and_refused_settings(
    saved_model: Path, videos: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    out = str(tmp_path / "idx")
    long_video = str(videos["long"])
    base = ["index", long_video, "--model", str(saved_model), "--out", out, "--workers", "0"]
    assert main([*base, "--segments", "4", "--stride", "2", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    planned = plan_windows(12.0, 4.0, 2.0)
    assert report["videos"] == 1 and report["segments"] == len(planned)
    assert report["window"] == 4.0 and report["stride"] == 2.0
    assert report["rows_embedded"] == len(planned)

    assert main(["search", out, "one", "--json", "--top-k", "20"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    found = sorted((h["start"], h["end"]) for h in hits)
    np.testing.assert_allclose(np.array(found), np.array(planned), atol=1e-6)
    assert all(h["video"] == long_video for h in hits)

    assert main(["search", out, "--like", f"{long_video}@4-8", "--top-k", "1"]) == 0
    line = capsys.readouterr().out.strip()
    rank, score, span, video = line.split()
    assert rank == "1" and video == long_video
    start, end = (float(x) for x in span.split("-"))
    assert (start, end) == (4.0, 8.0)  # the same frames as the query: the same embedding
    assert float(score) == pytest.approx(1.0, abs=1e-4)

    assert main([*base, "--segments", "3"]) == 2
    assert "--rebuild" in capsys.readouterr().err
    assert main([*base, "--no-progress"]) == 0  # no --segments: the index's own settings
    assert "1 videos indexed in 5 segments" in capsys.readouterr().out
    assert main([*base, "--segments", "3", "--rebuild", "--no-progress"]) == 0
    assert "in 4 segments" in capsys.readouterr().out
