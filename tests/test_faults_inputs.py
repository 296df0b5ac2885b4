"""Hostile and odd inputs: dead frame-list entries, odd video files, edited model folders."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import small_data_config
from text4vis.config import Config
from text4vis.data import build_dataset, build_loader
from text4vis.data.annotations import AnnotationError, read_annotations
from text4vis.data.dataset import FailureTracker
from text4vis.data.decoders import VideoDecodeError
from text4vis.data.synthetic import write_frame_folder

T, SIZE = 4, 32


@pytest.fixture()
def frame_list(tmp_path):
    """A frame list of 4 good folders with 2 dead entries (0 frames) between them."""
    rng = np.random.default_rng(0)
    lines = []
    for k in range(4):
        frames = rng.integers(0, 255, (6, 40, 40, 3), dtype=np.uint8)
        write_frame_folder(tmp_path / "frames" / f"v{k}", frames)
        lines.append(f"frames/v{k} 6 {k % 2}")
    lines.insert(1, "frames/dead_a 0 0")
    lines.insert(4, "frames/dead_b 0 1")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.csv").write_text("id,name\n0,a\n1,b\n")
    return tmp_path


def _cfg(root, **data) -> Config:
    data = {"format": "frames", **data}
    return small_data_config(
        root,
        root / "labels.csv",
        root / "list.txt",
        num_segments=T,
        input_size=SIZE,
        batch_size=2,
        eval_batch_size=3,
        **data,
    )


def test_zero_frame_entries_load_and_are_reported_by_line(frame_list, caplog):
    records = read_annotations(frame_list / "list.txt")
    assert len(records) == 6 and [r.num_frames for r in records].count(0) == 2
    assert "2 entries have 0 frames" in caplog.text
    assert (
        "list.txt:2 (frames/dead_a)" in caplog.text and "list.txt:5 (frames/dead_b)" in caplog.text
    )


def test_zero_frame_entries_in_training_are_retried_and_listed(frame_list, tmp_path):
    cfg = _cfg(frame_list)
    dataset = build_dataset(cfg, "train")
    tracker = FailureTracker(len(dataset), 0.9, tmp_path / "failed.txt")
    seen = 0
    for batch in build_loader(dataset, cfg, "train", seed=0):
        tracker.update(batch["failures"])
        seen += len(batch["index"])
        assert not {1, 4} & set(batch["index"].tolist())  # never a dead entry's clip
    assert seen == 6
    assert {p.rsplit("/", 1)[-1] for p in tracker.failed} == {"dead_a", "dead_b"}
    assert all("0 frames" in reason for reason in tracker.failed.values())


def test_zero_frame_entries_in_evaluation_refuse_listing_every_line(frame_list):
    with pytest.raises(AnnotationError, match=r"2 entries have 0 frames.*list.txt:2.*list.txt:5"):
        build_dataset(_cfg(frame_list), "val")


def test_zero_frame_entries_in_evaluation_skip_and_report(frame_list):
    cfg = _cfg(frame_list, skip_unreadable=True)
    dataset = build_dataset(cfg, "val")
    skipped, kept = [], []
    for batch in build_loader(dataset, cfg, "val", seed=0):
        skipped += batch["skipped"]
        kept += batch["index"].tolist()
    assert sorted(kept) == [0, 2, 3, 5]
    assert sorted(i for i, _, _ in skipped) == [1, 4]
    assert all("0 frames" in reason and "list.txt:" in reason for _, _, reason in skipped)


def test_a_zero_frame_entry_read_directly_names_itself(frame_list):
    dataset = build_dataset(_cfg(frame_list, skip_unreadable=False), "train")
    with pytest.raises(
        VideoDecodeError, match=r"dead_a: the list gives it 0 frames \(.*list.txt:2\)"
    ):
        dataset.load(1, np.random.default_rng(0))
    assert torch.is_tensor(dataset.load(0, np.random.default_rng(0)))


def _tiny_model(temporal: str = "mean"):
    from text4vis.config import load_config
    from text4vis.models.video import VideoRecognizer

    cfg = load_config(
        None, ["model.arch=tiny-vit", f"model.temporal={temporal}", "model.classifier=orthogonal"]
    )
    return VideoRecognizer.from_config(cfg.model, ["a", "b", "c"], num_frames=T, image_size=SIZE)


@pytest.mark.parametrize("name", ["model.safetensors", "classifier.safetensors"])
@pytest.mark.parametrize("edit", ["flip", "truncate", "delete"])
def test_from_pretrained_names_an_edited_file(tmp_path, name, edit):
    from text4vis.models.integrity import ModelFolderError
    from text4vis.models.video import VideoRecognizer

    folder = _tiny_model().save_pretrained(tmp_path / "m")
    VideoRecognizer.from_pretrained(folder)  # intact: loads
    path = folder / name
    data = bytearray(path.read_bytes())
    if edit == "flip":
        data[len(data) // 2] ^= 0xFF  # one byte of a tensor: the file still parses
        path.write_bytes(bytes(data))
    elif edit == "truncate":
        path.write_bytes(bytes(data[:-10]))
    else:
        path.unlink()
    with pytest.raises(ModelFolderError, match=str(path)):
        VideoRecognizer.from_pretrained(folder)


def test_from_pretrained_names_weights_of_other_shapes(tmp_path):
    """An older folder (no checksums) whose weights were swapped for another model's."""
    import json

    from text4vis.errors import Text4VisError
    from text4vis.models.video import VideoRecognizer

    folder = _tiny_model("mean").save_pretrained(tmp_path / "m")
    other = _tiny_model("transformer").save_pretrained(tmp_path / "other")
    config = json.loads((folder / "config.json").read_text())
    del config["files"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(Text4VisError, match=r"model.safetensors: tensors do not fit"):
        VideoRecognizer.from_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(Text4VisError, match=r"model.safetensors cannot be read"):
        VideoRecognizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def odd_videos(tmp_path_factory):
    """Odd files named .mp4 and frame folders, with the names expected to be reported."""
    import av

    from text4vis.data.synthetic import write_mp4

    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    write_mp4(root / "good.mp4", rng.integers(0, 255, (8, 48, 64, 3), dtype=np.uint8))
    write_mp4(root / "one_frame.mp4", rng.integers(0, 255, (1, 48, 64, 3), dtype=np.uint8))
    # 3840x2160: read, and sampled down to the model's input like any other
    write_mp4(
        root / "uhd.mp4", rng.integers(0, 255, (2, 2160, 3840, 3), dtype=np.uint8),
        preset="ultrafast",
    )  # fmt: skip
    with av.open(str(root / "audio_only.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for k in range(8):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, k * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = (root / "good.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "zero_bytes.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n" * 40)
    for name in ("missing_jpeg", "bad_jpeg"):
        write_frame_folder(root / name, rng.integers(0, 255, (6, 40, 40, 3), dtype=np.uint8))
    (root / "missing_jpeg" / "img_00003.jpg").unlink()
    (root / "bad_jpeg" / "img_00004.jpg").write_bytes(b"not a jpeg")
    (root / "labels.csv").write_text("id,name\n0,a\n1,b\n")
    readable = ["good.mp4", "one_frame.mp4", "uhd.mp4"]
    unreadable = ["audio_only.mp4", "truncated.mp4", "zero_bytes.mp4", "text.mp4"]
    return root, readable, unreadable, ["missing_jpeg", "bad_jpeg"]


def test_odd_videos_in_evaluation_are_read_or_named(odd_videos):
    from text4vis.data.annotations import VideoRecord

    root, readable, unreadable, folders = odd_videos
    cfg = _cfg(root, format="video", skip_unreadable=True)
    records = [VideoRecord(name, None, 0) for name in readable + unreadable]
    dataset = build_dataset(cfg, "val", records=records)
    kept, skipped = [], []
    for batch in build_loader(dataset, cfg, "val", seed=0):
        kept += batch["index"].tolist()
        skipped += [(path.rsplit("/", 1)[-1], reason) for _, path, reason in batch["skipped"]]
        assert batch["video"].shape[1:] == (1, T, 3, SIZE, SIZE)
    assert sorted(kept) == [0, 1, 2]
    assert sorted(name for name, _ in skipped) == sorted(unreadable)
    assert dict(skipped)["audio_only.mp4"] == "the file has no video stream"
    # without skip_unreadable: the first one stops evaluation, naming it
    strict = build_dataset(_cfg(root, format="video"), "val", records=records)
    for index, name in enumerate(readable + unreadable):
        if name in unreadable:
            with pytest.raises(VideoDecodeError, match=name):
                strict[index]
    frames = build_dataset(
        _cfg(root, skip_unreadable=True), "val", records=[VideoRecord(f, 6, 0) for f in folders]
    )
    reasons = [frames[i]["reason"] for i in range(2)]
    assert "img_00003.jpg is missing" in reasons[0] and "not a valid JPEG" in reasons[1]


def test_odd_videos_in_predict_are_listed_by_name(odd_videos, tmp_path, capsys):
    from text4vis.cli import main

    root, readable, unreadable, folders = odd_videos
    model = _tiny_model().save_pretrained(tmp_path / "m")
    paths = [str(root / name) for name in readable + unreadable + folders]
    status = main(["predict", *paths, "--model", str(model), "--workers", "0", "--json",
                   "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1  # some videos could not be read
    for name in unreadable + folders:
        assert name in captured.err or name in captured.out, name
    assert f"{len(unreadable + folders)} of {len(paths)} videos could not be read" in captured.err


# A subprocess opens one video, reads frames 0 and n-1 and prints its peak resident memory before
# opening the video and after reading. Not ru_maxrss: Linux carries the parent's peak into a forked
# child's ru_maxrss through exec (the pytest process held the video's frames a moment before), so
# it would report the parent's figure. VmHWM belongs to the new process image alone.
_PEAK_MEMORY_PROBE = """
import json, sys
from text4vis.data import open_video
import av, numpy  # imported before the first figure: the baseline holds the libraries

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

before = peak_kib()
reader = open_video(sys.argv[1], threads=1)
clip = reader.frames([0, reader.num_frames - 1])
after = peak_kib()
print(json.dumps({"frames": reader.num_frames, "shape": list(clip.shape), "before_kib": before,
                  "after_kib": after}))
"""


def _peak_memory_of_reading(path) -> dict:
    import json
    import os
    import subprocess
    from pathlib import Path

    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY_PROBE, str(path)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the peak memory from /proc/self/status"
)
@pytest.mark.process
def test_uhd_video_memory_is_bounded_by_the_sampled_frames(tmp_path):
    """Reading 2 frames of a 3840x2160 video needs memory for those 2 frames, not for the video.

    Two videos of the same frames, 12 and 48 long, each one keyframe followed by P-frames only
    (no B-frames, which the reader may skip undecoded): reading the first and the last frame makes
    the reader decode every frame of the file. A fresh process per video keeps its peak resident
    memory (``VmHWM``; not ``ru_maxrss``, which Linux carries over from the parent) its own. One
    decoder thread (what DataLoader workers use) keeps the decoder's working set independent of
    the machine's cores: with frame threading each thread holds about one more picture in flight.

    - Long minus short: a reader that kept every decoded frame as RGB would need 36 more frames x
      3840 x 2160 x 3 B = 36 x 24.9 MB = 896 MB (as YUV 4:2:0 pictures, half that); one that keeps
      only the sampled frames needs the same in both. The test allows 250 MB (noise from the
      allocator is a few MB).
    - Growth over the process's peak before opening the file: the 2 sampled RGB frames twice (the
      decoded ones and the stacked result), plus 4 RGB frames' worth for the decoder (the current
      and reference pictures in YUV 4:2:0, half an RGB frame each, and the RGB conversion's
      buffers): 8 x 24.9 = 199 MB. Keeping the 12 frames of the short video alone would exceed it.
    """
    from text4vis.data.synthetic import write_mp4

    height, width, rgb_frame = 2160, 3840, 2160 * 3840 * 3
    # 2 distinct frames of 16x16 blocks alternate: cheap to encode with x264's fastest preset
    blocks = np.random.default_rng(0).integers(0, 255, (2, height // 16, width // 16, 3), np.uint8)
    distinct = blocks.repeat(16, axis=1).repeat(16, axis=2)
    peaks = {}
    for length in (12, 48):
        path = tmp_path / f"uhd_{length}.mp4"
        frames = distinct[np.arange(length) % 2]  # a copy: length x 24.9 MB, freed right after
        write_mp4(path, frames, preset="ultrafast", bframes=0, gop=length)
        del frames
        peaks[length] = _peak_memory_of_reading(path)
        assert peaks[length]["frames"] == length
        assert peaks[length]["shape"] == [2, height, width, 3]
    growth = {n: (p["after_kib"] - p["before_kib"]) * 1024 for n, p in peaks.items()}
    extra_frames = 48 - 12
    assert growth[48] - growth[12] < 250e6 < extra_frames * rgb_frame, growth
    assert growth[12] < (2 * 2 + 4) * rgb_frame and growth[48] < (2 * 2 + 4) * rgb_frame, growth
