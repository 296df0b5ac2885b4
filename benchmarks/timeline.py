"""Timelines of long videos: throughput against decoding alone, and peak memory against length.

Two measurements, each against its reference in the same run:

1. **Throughput** in seconds of video per second of wall time, for a 640x360 30 fps H.264 file
   (written here with PyAV's libx264, preset ``ultrafast``): decoding alone (every frame
   decoded, nothing converted: the limit of a single front-to-back pass), decoding plus the
   window assembly (the sampled frames converted to RGB, resized and cropped), and
   :meth:`text4vis.predict.Predictor.timeline` with ViT-B/32 (open_clip by name, random weights,
   mean pooling, T = 8 frames per window) in fp32 and int8 (dynamic quantization of the linear
   layers). Each configuration runs ``--rounds`` times, interleaved; the table shows the median.
2. **Peak memory**: ``Predictor.timeline`` (ViT-B/32 int8) over a 30-second 1920x1080 file and
   a 10-minute one (the 30 seconds repeated by copying packets with shifted timestamps: no
   re-encoding), each in a fresh process: its resident memory after loading the model and one
   warm-up batch, and its peak (``VmHWM``, reset at that point) during the timeline.

The generated files are deleted at the end. Run::

    .venv/bin/python benchmarks/timeline.py                      # ~15 minutes on 2 cores
    .venv/bin/python benchmarks/timeline.py --seconds 20 --long-seconds 120 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_video(path: Path, seconds: float, width: int, height: int, fps: int) -> None:
    """A moving textured scene: a fixed random texture panned a few pixels per frame, with a
    bright square crossing it (cheap to make, not trivially compressible)."""
    import av

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height // 8 + 64, width // 8 + 64, 3), np.uint8)
    texture = texture.repeat(8, axis=0).repeat(8, axis=1)  # 8x8 blocks
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": "ultrafast", "g": str(2 * fps)}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(int(seconds * fps)):
            top, left = k % 64, (2 * k) % 64  # the texture pans down and right
            frame = np.ascontiguousarray(texture[top : top + height, left : left + width])
            x = (7 * k) % max(1, width - 64)
            frame[height // 3 : height // 3 + 64, x : x + 64] = 250
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def repeat_video(source: Path, target: Path, times: int) -> None:
    """``source`` played ``times`` times in a row, by copying its packets with shifted timestamps
    (no re-encoding: a long file in seconds)."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        packets = [p for p in src.demux(in_stream) if p.size]
        span = max(p.pts for p in packets) - min(p.pts for p in packets)
        step = span + (packets[1].pts - packets[0].pts if len(packets) > 1 else 1)
        step = int(round(in_stream.duration or step)) if in_stream.duration else step
        for k in range(times):
            for packet in packets:
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts = packet.pts + k * step, packet.dts + k * step
                copy.time_base = packet.time_base
                copy.is_keyframe = packet.is_keyframe
                copy.stream = out_stream
                dst.mux(copy)


def decode_only(path: Path) -> float:
    """Wall seconds to decode every frame (no pixel conversion)."""
    from text4vis.data.streams import open_frame_stream

    start = time.perf_counter()
    with open_frame_stream(path) as stream:
        for _ in stream:
            pass
    return time.perf_counter() - start


def decode_and_windows(path: Path, window: float, stride: float, frames: int) -> float:
    """Wall seconds to decode and assemble the windows (sampled frames resized and cropped)."""
    from text4vis.data.streams import iter_windows, open_frame_stream, window_spans
    from text4vis.data.transforms import EvalTransform

    transform = EvalTransform(224, resize_size=256)
    start = time.perf_counter()
    with open_frame_stream(path) as stream:
        spans = window_spans(stream.duration, window, stride)
        for _ in iter_windows(stream, spans, frames, lambda rgb: transform(rgb[None])[0, 0]):
            pass
    return time.perf_counter() - start


def build_predictor(arch: str, precision: str, frames: int, batch: int) -> object:
    from text4vis.predict import Predictor

    logging.getLogger("text4vis.predict").setLevel(logging.ERROR)  # the random-weights warning
    return Predictor.from_backbone(
        arch, "", num_frames=frames, device="cpu", precision=precision, batch_size=batch
    )


_MEMORY_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from timeline import build_predictor

def status_kib(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key))

from text4vis.timeline import embed_windows

predictor = build_predictor(sys.argv[3], "int8", 8, 8)
names = [f"class {i}" for i in range(8)]
predictor.classifier_for(names)
# A warm-up batch of 8 windows so the model's own working memory is in the baseline.
embed_windows(predictor, [[torch.zeros(3, 224, 224, dtype=torch.uint8)] * 8] * 8)
# Loading the model peaks higher than anything after it: reset the peak (Linux >= 4.0) so that
# VmHWM measures the timeline from the resident size it starts at.
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = status_kib("VmRSS:")
timeline = predictor.timeline(sys.argv[2], window=4.0, stride=2.0, labels=names)
print(json.dumps({"windows": len(timeline.windows), "duration": timeline.duration,
                  "before_kib": before, "after_kib": status_kib("VmHWM:")}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="throughput video length")
    parser.add_argument("--long-seconds", type=float, default=600.0, help="long 1080p video")
    parser.add_argument("--short-seconds", type=float, default=30.0, help="short 1080p video")
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--stride", type=float, default=2.0)
    parser.add_argument("--frames", type=int, default=8, help="T, frames per window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--keep", metavar="DIR", help="write the videos here and keep them")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="text4vis-timeline-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"class {i}" for i in range(8)]
    lines = [
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.1f}",
    ]
    try:
        clip = folder / "throughput_640x360.mp4"
        start = time.perf_counter()
        write_video(clip, args.seconds, 640, 360, 30)
        print(f"wrote {clip.name} ({args.seconds:g} s) in {time.perf_counter() - start:.0f} s")
        predictors = {p: build_predictor(args.arch, p, args.frames, 8) for p in ("fp32", "int8")}
        for predictor in predictors.values():  # warm-up, text classifier built
            predictor.timeline(clip, window=args.window, stride=args.stride, labels=names)
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            times.setdefault("decode only", []).append(decode_only(clip))
            times.setdefault("decode + windows (resize, crop)", []).append(
                decode_and_windows(clip, args.window, args.stride, args.frames)
            )
            for precision, predictor in predictors.items():
                start = time.perf_counter()
                timeline = predictor.timeline(
                    clip, window=args.window, stride=args.stride, labels=names
                )
                times.setdefault(f"timeline {args.arch} {precision}", []).append(
                    time.perf_counter() - start
                )
        windows = len(timeline.windows)
        lines += [
            "",
            f"640x360 30 fps, {args.seconds:g} s, windows of {args.window:g} s every "
            f"{args.stride:g} s ({windows} windows, T={args.frames}), median of {args.rounds}:",
            "",
            "| pass | wall s | video s per wall s | ratio to decoding alone |",
            "|---|---:|---:|---:|",
        ]
        floor = statistics.median(times["decode only"])
        for name, values in times.items():
            wall = statistics.median(values)
            lines.append(
                f"| {name} | {wall:.2f} | {args.seconds / wall:.1f} | {floor / wall:.2f} |"
            )
        clip.unlink()
        if not args.skip_memory:
            lines += [
                "",
                "| 1920x1080 30 fps | windows | RSS before MB | peak RSS during MB | growth MB |",
                "|---|---:|---:|---:|---:|",
            ]
            short = folder / "memory_short_1080p.mp4"
            write_video(short, args.short_seconds, 1920, 1080, 30)
            repeats = max(1, int(round(args.long_seconds / args.short_seconds)))
            for seconds in (args.short_seconds, args.short_seconds * repeats):
                path = short if seconds == args.short_seconds else folder / "memory_long_1080p.mp4"
                if path != short:
                    repeat_video(short, path, repeats)
                result = subprocess.run(
                    [sys.executable, "-c", _MEMORY_PROBE, str(Path(__file__).parent), str(path),
                     args.arch],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                figures = json.loads(result.stdout.strip().splitlines()[-1])
                growth = (figures["after_kib"] - figures["before_kib"]) / 1024
                lines.append(
                    f"| {seconds:g} s ({figures['duration']:.1f} s decoded) | {figures['windows']} "
                    f"| {figures['before_kib'] / 1024:.0f} | {figures['after_kib'] / 1024:.0f} "
                    f"| {growth:.1f} |"
                )
            for path in (short, folder / "memory_long_1080p.mp4"):
                path.unlink(missing_ok=True)
    finally:
        if not args.keep:
            for leftover in folder.glob("*.mp4"):
                leftover.unlink()
            folder.rmdir()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
