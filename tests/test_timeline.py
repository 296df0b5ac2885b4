"""Timelines of long videos: windows, segments, times from timestamps, bounded memory.

The label checks use a model whose answers are known by construction: its frame encoder measures
how much of the frame each of the synthetic actions' four object colours covers, and its frozen
classifier holds one row per colour. A long video made of synthetic action clips of different
colours must then come out as one segment per clip, cut where the clips meet.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from text4vis.data.actions import COLOURS, ActionClass, render_clip
from text4vis.data.streams import (
    TimedFrame,
    iter_windows,
    open_frame_stream,
    plan_windows,
    sample_times,
    upright,
)
from text4vis.data.synthetic import write_mp4
from text4vis.errors import UsageError
from text4vis.timeline import merge_segments, smooth_probabilities

SIZE = 48
FPS = 10
NUM_FRAMES = 4
COLOUR_NAMES = list(COLOURS)
# One action per colour, each keeping its object on screen for the whole clip.
ACTIONS = {
    "red": ActionClass("red", "circle", "moving left"),
    "blue": ActionClass("blue", "square", "moving right"),
    "green": ActionClass("green", "triangle", "moving up"),
    "yellow": ActionClass("yellow", "circle", "moving down"),
}


class ColourCoverage(nn.Module):
    """Frames ``[N, 3, H, W]`` (CLIP-normalised) -> ``[N, 4]``: the fraction of pixels within 70
    (RGB distance) of each object colour, plus a small constant so no embedding is zero."""

    def __init__(self) -> None:
        super().__init__()
        from text4vis.data.transforms import CLIP_MEAN, CLIP_STD

        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255)
        self.register_buffer("colours", torch.tensor([COLOURS[c] for c in COLOUR_NAMES]).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x * self.std + self.mean).permute(0, 2, 3, 1)  # [N, H, W, 3] in 0..255
        distance = torch.cdist(pixels.flatten(1, 2), self.colours[None].expand(len(x), -1, -1))
        return (distance < 70).float().mean(dim=1) + 1e-3  # [N, H*W, 4] -> [N, 4]


def colour_predictor(**kwargs: Any) -> Any:
    """A predictor whose top label is the colour covering most of the sampled frames."""
    from text4vis.config import DataConfig
    from text4vis.models.classifier import FrozenClassifier
    from text4vis.models.temporal import build_temporal_head
    from text4vis.models.video import VideoRecognizer
    from text4vis.predict import Predictor

    visual = ColourCoverage()
    model = VideoRecognizer(
        visual,
        build_temporal_head("mean", embed_dim=4, visual=visual),
        FrozenClassifier(torch.eye(4)),
        [ACTIONS[c].name for c in COLOUR_NAMES],
        embed_dim=4,
        logit_scale=100.0,
        num_frames=NUM_FRAMES,
        image_size=SIZE,
    )
    data = DataConfig(num_segments=NUM_FRAMES, input_size=SIZE, resize_size=SIZE)
    return Predictor(model, data=data, device="cpu", **kwargs)


def action_frames(colour: str, seconds: float, seed: int) -> np.ndarray:
    """uint8 [seconds * FPS, SIZE, SIZE, 3]: one clip of the colour's action."""
    rng = np.random.default_rng(seed)
    return render_clip(ACTIONS[colour], rng, size=SIZE, num_frames=int(round(seconds * FPS)))


@pytest.fixture(scope="module")
def predictor() -> Any:
    return colour_predictor(batch_size=4)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Four action clips of 3 s back to back (cuts at 3, 6, 9 s), 10 fps."""
    order = ["red", "blue", "green", "yellow"]
    frames = np.concatenate([action_frames(c, 3.0, seed) for seed, c in enumerate(order)])
    path = tmp_path_factory.mktemp("timeline") / "long.mp4"
    write_mp4(path, frames, fps=FPS, preset="ultrafast", crf=12)
    return {"path": path, "labels": [ACTIONS[c].name for c in order], "cuts": [3.0, 6.0, 9.0]}


def check_segments(segments: list[Any], labels: list[str], cuts: list[float], tol: float) -> None:
    assert [s.label for s in segments] == labels, [(s.label, s.start, s.end) for s in segments]
    for segment, cut in zip(segments, cuts):
        assert abs(segment.end - cut) <= tol, (segment, cut)
    for a, b in zip(segments, segments[1:]):
        assert a.end == b.start  # the segments tile the video


# ----------------------------------------------------------------------------------------------
# Pure parts
# ----------------------------------------------------------------------------------------------


def test_windows_cover_the_video_and_stop_at_its_end() -> None:
    assert plan_windows(10.0, 4.0, 2.0) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert plan_windows(11.0, 4.0, 2.0) == [(0, 4), (2, 6), (4, 8), (6, 10), (8, 11)]
    assert plan_windows(2.5, 4.0, 2.0) == [(0, 2.5)]  # shorter than a window: all of it
    assert sample_times(2.0, 6.0, 4) == [2.5, 3.5, 4.5, 5.5]  # centres of 4 equal parts
    with pytest.raises(UsageError, match="longer than the window"):
        plan_windows(10.0, 2.0, 3.0)
    with pytest.raises(UsageError, match="positive"):
        plan_windows(10.0, 0.0, 0.0)


def test_each_sample_takes_the_frame_on_screen_and_frames_convert_once() -> None:
    # Variable frame rate: frames at uneven times; frame k's pixels are all k.
    times = [0.0, 0.1, 0.15, 0.5, 0.9, 1.0, 1.7, 2.2, 2.3, 3.9]
    loads: list[int] = []

    def frames() -> Any:
        for k, t in enumerate(times):

            def load(k: int = k) -> np.ndarray:
                loads.append(k)
                return np.full((2, 2, 3), k, np.uint8)

            yield TimedFrame(t, load)

    spans = plan_windows(4.0, 2.0, 1.0)
    windows = list(iter_windows(frames(), spans, 4, transform=lambda rgb: int(rgb[0, 0, 0])))
    assert [(w.start, w.end) for w in windows] == spans
    for window in windows:
        for t, value, frame_time in zip(window.sample_times, window.frames, window.frame_times):
            on_screen = max(k for k, s in enumerate(times) if s <= t)  # the last frame at or before
            assert value == on_screen and frame_time == times[on_screen], (window.index, t)
    assert len(loads) == len(set(loads))  # a frame sampled by several windows converted once
    sampled = {v for w in windows for v in w.frames}
    assert set(loads) == sampled  # and frames no window samples never converted


def test_windows_are_yielded_while_reading_not_at_the_end() -> None:
    """At most the windows overlapping the current time are held: a window comes out as soon as
    the frame after its last sample has been read."""
    read: list[float] = []

    def frames() -> Any:
        for k in range(400):
            read.append(k / 10)
            yield TimedFrame(k / 10, lambda k=k: np.full((1, 1, 3), k % 256, np.uint8))

    for window in iter_windows(frames(), plan_windows(40.0, 2.0, 1.0), 4):
        assert read[-1] <= window.sample_times[-1] + 0.1 + 1e-9  # not read far ahead


def test_smoothing_is_a_centred_moving_average() -> None:
    probs = torch.softmax(torch.randn(7, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    smoothed = smooth_probabilities(probs, 3)
    for i in range(7):
        rows = probs[max(0, i - 1) : i + 2]
        torch.testing.assert_close(smoothed[i], rows.mean(dim=0))
    torch.testing.assert_close(smoothed.sum(dim=1), torch.ones(7))
    torch.testing.assert_close(smooth_probabilities(probs, 1), probs)


def test_segments_merge_runs_and_cut_halfway_between_window_centres() -> None:
    spans = plan_windows(10.0, 4.0, 2.0)  # centres 2, 4, 6, 8
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    segments = merge_segments(spans, probs, ["a", "b"], 10.0)
    assert [(s.start, s.end, s.label, s.num_windows) for s in segments] == [
        (0.0, 5.0, "a", 2),
        (5.0, 10.0, "b", 2),
    ]
    assert segments[0].score == pytest.approx(0.75) and segments[1].score == pytest.approx(0.75)


def test_upright_turns_counter_clockwise() -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = 255  # top-left marker
    turned = upright(image, 90)
    assert turned.shape == (3, 2, 3) and turned[2, 0, 0] == 255  # now bottom-left
    assert upright(image, -90)[0, 1, 0] == 255  # clockwise: top-right
    assert upright(image, 180)[1, 2, 0] == 255


# ----------------------------------------------------------------------------------------------
# Whole videos
# ----------------------------------------------------------------------------------------------


def test_timeline_of_concatenated_actions_finds_the_cuts_and_labels(
    predictor: Any, long_video: dict[str, Any]
) -> None:
    stride = 0.5
    timeline = predictor.timeline(long_video["path"], window=1.5, stride=stride, top_k=None)
    assert timeline.duration == pytest.approx(12.0, abs=0.11)
    assert [(w.start, w.end) for w in timeline.windows] == plan_windows(
        timeline.duration, 1.5, stride
    )
    check_segments(timeline.segments, long_video["labels"], long_video["cuts"], stride)
    for window in timeline.windows:
        assert sum(entry.score for entry in window.labels) == pytest.approx(1.0, abs=1e-4)
        inside = [
            i for i, (a, b) in enumerate(zip([0.0, *long_video["cuts"]], [*long_video["cuts"], 12.0]))
            if a <= window.start and window.end <= b
        ]  # fmt: skip
        if inside:  # a window inside one clip is labelled as that clip
            assert window.top.label == long_video["labels"][inside[0]]
    data = json.loads(json.dumps(timeline.to_dict()))
    assert set(data) == {"video", "duration", "window", "stride", "smooth", "windows", "segments"}
    assert set(data["windows"][0]) == {"start", "end", "labels"}
    assert set(data["segments"][0]) == {"start", "end", "label", "score", "windows"}


def test_timeline_matches_predict_on_the_same_frames(
    predictor: Any, long_video: dict[str, Any]
) -> None:
    """A window's scores are what predict gives for a clip of exactly its sampled frames."""
    timeline = predictor.timeline(long_video["path"], window=3.0, stride=3.0, top_k=None)
    assert len(timeline.windows) == 4
    names, weight = predictor.classifier_for(None)
    with open_frame_stream(long_video["path"]) as stream:
        first = next(iter_windows(stream, [(0.0, 3.0)], NUM_FRAMES, path="x"))
    from text4vis.timeline import embed_windows, frame_transform

    transform = frame_transform(predictor)
    clip = [transform(rgb) for rgb in first.frames]
    expected = predictor.scores(embed_windows(predictor, [clip])[:, None], weight)[0]
    got = {entry.label: entry.score for entry in timeline.windows[0].labels}
    for name, score in zip(names, expected.tolist()):
        assert got[name] == pytest.approx(score, abs=1e-5)


def test_smoothing_removes_a_one_window_flicker(predictor: Any, tmp_path: Path) -> None:
    """A 0.5 s flash of another colour inside a 6 s clip: one window of it without smoothing,
    none with a 5-window average."""
    frames = np.concatenate(
        [action_frames("red", 3.0, 1), action_frames("blue", 0.5, 2), action_frames("red", 2.5, 3)]
    )
    path = tmp_path / "flicker.mp4"
    write_mp4(path, frames, fps=FPS, preset="ultrafast", crf=12)
    raw = predictor.timeline(path, window=0.5, stride=0.5)
    assert [s.label for s in raw.segments] == [ACTIONS[c].name for c in ("red", "blue", "red")]
    smoothed = predictor.timeline(path, window=0.5, stride=0.5, smooth=5)
    assert [s.label for s in smoothed.segments] == [ACTIONS["red"].name]
    assert smoothed.smooth == 5


def test_variable_frame_rate_times_come_from_timestamps(predictor: Any, tmp_path: Path) -> None:
    """2 s of red at 25 fps, then 4 s of blue at 5 fps: 50 + 20 frames. Counting frames at an
    average rate would put the cut at 50/70 of the video (4.3 s); the timestamps put it at 2 s."""
    red = action_frames("red", 2.0, 0)  # 20 frames at FPS=10, resampled below
    red = red[np.arange(50) * len(red) // 50]
    blue = action_frames("blue", 4.0, 1)[::2]  # 20 frames
    frames = np.concatenate([red, blue])
    pts = [k * 40 for k in range(50)] + [2000 + k * 200 for k in range(20)]  # milliseconds
    path = tmp_path / "vfr.mp4"
    write_mp4(path, frames, fps=25, pts=pts, time_base=Fraction(1, 1000), preset="ultrafast")
    timeline = predictor.timeline(path, window=1.0, stride=0.5)
    assert timeline.duration == pytest.approx(6.0, abs=0.25)
    check_segments(timeline.segments, [ACTIONS["red"].name, ACTIONS["blue"].name], [2.0], 0.5)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_start_time_other_than_zero_is_taken_off(
    predictor: Any, tmp_path: Path, suffix: str
) -> None:
    frames = np.concatenate([action_frames("green", 2.0, 0), action_frames("yellow", 2.0, 1)])
    pts = [10_000 + k * 100 for k in range(len(frames))]  # the first frame at 10 s
    path = tmp_path / f"offset{suffix}"
    write_mp4(path, frames, fps=FPS, pts=pts, time_base=Fraction(1, 1000), preset="ultrafast")
    with open_frame_stream(path) as stream:
        assert stream.start_time == pytest.approx(10.0, abs=0.01)
        first = next(iter(stream))
        assert first.time == pytest.approx(0.0, abs=0.01)
    timeline = predictor.timeline(path, window=1.0, stride=0.5)
    assert timeline.duration == pytest.approx(4.0, abs=0.15)
    check_segments(timeline.segments, [ACTIONS["green"].name, ACTIONS["yellow"].name], [2.0], 0.5)


def test_a_rotated_file_gives_upright_frames(predictor: Any, tmp_path: Path) -> None:
    """A file coded 64 wide x 32 high with a display matrix turning it 90 degrees
    counter-clockwise is shown 32 wide x 64 high: the coded top-left block is then bottom-left."""
    import av

    path = tmp_path / "rotated.mp4"
    coded = np.full((32, 64, 3), 40, np.uint8)
    coded[:16, :16] = COLOURS["red"]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv444p"
        stream.set_display_rotation(90)
        for _ in range(20):
            for packet in stream.encode(av.VideoFrame.from_ndarray(coded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with open_frame_stream(path) as stream:
        frame = next(iter(stream)).rgb()
    assert frame.shape == (64, 32, 3)
    red = np.linalg.norm(frame.astype(float) - COLOURS["red"], axis=-1) < 40
    assert red[48:, :16].mean() > 0.9 and red[:48].mean() < 0.05
    timeline = predictor.timeline(path, window=1.0)
    assert timeline.duration == pytest.approx(2.0, abs=0.15) and len(timeline.windows) == 2


def test_frame_folders_take_times_from_fps(predictor: Any, tmp_path: Path) -> None:
    from PIL import Image

    frames = np.concatenate([action_frames("blue", 1.0, 0), action_frames("red", 1.0, 1)])
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"img_{k + 1:05d}.jpg", quality=95)
    with pytest.raises(UsageError, match="--fps"):
        predictor.timeline(folder, window=0.5)
    timeline = predictor.timeline(folder, window=0.4, stride=0.2, fps=FPS)
    assert timeline.duration == pytest.approx(2.0)
    check_segments(timeline.segments, [ACTIONS["blue"].name, ACTIONS["red"].name], [1.0], 0.2)
    slow = predictor.timeline(folder, window=0.8, stride=0.4, fps=FPS / 2)  # 2x the times
    check_segments(slow.segments, [ACTIONS["blue"].name, ACTIONS["red"].name], [2.0], 0.4)


def test_unreadable_videos_get_an_error_entry(predictor: Any, tmp_path: Path) -> None:
    from text4vis.errors import VideoDecodeError

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        predictor.timeline(bad, window=1.0)
    (result,) = predictor.timeline_files([bad], window=1.0)
    assert result.error and result.to_dict() == {"video": str(bad), "error": result.error}


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------


def test_cli_timeline_json_csv_and_table(
    saved_model: Path, long_video: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    from text4vis.cli import main

    video = str(long_video["path"])
    base = ["predict", video, "--model", str(saved_model), "--window", "2", "--stride", "1"]
    assert main([*base, "--json", "--workers", "0"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["video"] == video and entry["window"] == 2.0 and entry["stride"] == 1.0
    spans = plan_windows(entry["duration"], 2.0, 1.0)
    assert [(w["start"], w["end"]) for w in entry["windows"]] == spans
    assert entry["segments"][0]["start"] == 0.0
    assert entry["segments"][-1]["end"] == pytest.approx(entry["duration"])
    for window in entry["windows"]:
        assert len(window["labels"]) == 3  # top-k 5 capped at the 3 classes
    assert main([*base, "--csv", "-", "--top-k", "1", "--smooth", "3"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == len(spans)
    assert set(rows[0]) >= {"video", "start", "end", "label", "score"}
    assert main(base) == 0
    table = capsys.readouterr().out
    assert "segments" in table and "windows" in table and video in table
    assert main(["predict", video, "--model", str(saved_model), "--stride", "1"]) == 2
    assert "--stride goes with --window" in capsys.readouterr().err
    assert main([*base, "--views", "2x1"]) == 2
    assert "one view per window" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------

_PEAK_PROBE = """
import json, sys
import av, numpy, torch  # imported before the first figure: the baseline holds the libraries
from text4vis.data.streams import iter_windows, open_frame_stream, plan_windows, prefetch
from text4vis.data.transforms import EvalTransform

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

transform = EvalTransform(224, resize_size=256)
before = peak_kib()
count = 0
with open_frame_stream(sys.argv[1], threads=1) as stream:
    spans = plan_windows(stream.duration, 2.0, 1.0)
    windows = iter_windows(stream, spans, 8, lambda rgb: transform(rgb[None])[0, 0])
    for window in prefetch(windows, 8):
        count += 1
print(json.dumps({"windows": count, "before_kib": before, "after_kib": peak_kib()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.process
def test_memory_does_not_grow_with_the_length(tmp_path: Path) -> None:
    """The windows of a 40 s and a 10 s 1280x720 video, each in a fresh process: the peak
    resident memory (VmHWM) grows by the same amount. Keeping the decoded frames would cost
    30 s x 10 fps x 2.7 MB (RGB) = 830 MB more for the long one; the test allows 60 MB."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 255, (4, 720 // 16, 1280 // 16, 3), np.uint8)
    distinct = blocks.repeat(16, axis=1).repeat(16, axis=2)  # 4 frames of 16x16 blocks
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    growth = {}
    for seconds in (10, 40):
        path = tmp_path / f"long_{seconds}.mp4"
        write_mp4(path, distinct[np.arange(seconds * FPS) % 4], fps=FPS, preset="ultrafast")
        result = subprocess.run(
            [sys.executable, "-c", _PEAK_PROBE, str(path)],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        assert figures["windows"] == seconds - 1
        growth[seconds] = (figures["after_kib"] - figures["before_kib"]) * 1024
        path.unlink()
    assert growth[40] - growth[10] < 60e6, growth
