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

3. **Live** (``--live-seconds``): a 640x360 25 fps stream served at its own pace over loopback
   HTTP (MPEG-TS) and labelled by :meth:`~text4vis.predict.Predictor.live` with ViT-B/32 int8:
   the delay behind the stream (median, max) and the skipped frames.

The generated files are deleted at the end. Run::

    .venv/bin/python benchmarks/timeline.py                      # ~15 minutes on 2 cores
    .venv/bin/python benchmarks/timeline.py --seconds 20 --long-seconds 120 --rounds 1
    .venv/bin/python benchmarks/timeline.py --skip-throughput --skip-memory --live-seconds 300
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


_SERVER = """
import socket, sys, time
path, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
data = open(path, "rb").read()
server = socket.create_server(("127.0.0.1", port))
print("ready", flush=True)
conn, _ = server.accept()
conn.recv(65536)
conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: video/mp2t\\r\\nContent-Length: %d\\r\\n\\r\\n"
             % len(data))
rate, start, sent = len(data) / seconds, time.monotonic(), 0
while sent < len(data):
    chunk = data[sent:sent + 1880]
    conn.sendall(chunk)
    sent += len(chunk)
    time.sleep(max(0.0, start + sent / rate - time.monotonic()))
conn.close()
"""


def measure_live(args: argparse.Namespace, folder: Path, names: list[str]) -> list[str]:
    """A 640x360 25 fps stream served at its own pace on the loopback interface (HTTP,
    MPEG-TS), labelled live by ViT-B/32 int8: delay behind the stream and skipped frames."""
    import socket

    path = folder / "live_640x360.ts"
    write_video(path, args.live_seconds, 640, 360, 25)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(path), str(port), str(args.live_seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        predictor = build_predictor(args.arch, "int8", args.frames, 1)
        session = predictor.live(
            f"http://127.0.0.1:{port}", window=args.window, stride=args.stride, labels=names
        )
        for _ in session:
            pass
    finally:
        server.wait(timeout=60)
        path.unlink()
    summary = session.summary.to_dict()
    return [
        "",
        f"live: 640x360 25 fps over loopback HTTP for {args.live_seconds:g} s, {args.arch} int8, "
        f"windows of {args.window:g} s every {args.stride:g} s (T={args.frames}):",
        "",
        "| windows | frames | skipped frames | delay median s | delay max s | ended |",
        "|---:|---:|---:|---:|---:|---|",
        f"| {summary['windows']} | {summary['frames']} | {summary['skipped_frames']} "
        f"| {summary['delay_median']:.3f} | {summary['delay_max']:.3f} | {summary['ended']} |",
    ]


def measure_throughput(args: argparse.Namespace, folder: Path, names: list[str]) -> list[str]:
    """Interleaved rounds of decoding, window assembly and timelines (fp32, int8)."""
    clip = folder / "throughput_640x360.mp4"
    start = time.perf_counter()
    write_video(clip, args.seconds, 640, 360, 30)
    print(f"wrote {clip.name} ({args.seconds:g} s) in {time.perf_counter() - start:.0f} s")
    predictors = {p: build_predictor(args.arch, p, args.frames, 8) for p in ("fp32", "int8")}
    for predictor in predictors.values():  # warm-up, text classifier built
        timeline = predictor.timeline(clip, window=args.window, stride=args.stride, labels=names)
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
    clip.unlink()
    lines = [
        "",
        f"640x360 30 fps, {args.seconds:g} s, windows of {args.window:g} s every "
        f"{args.stride:g} s ({len(timeline.windows)} windows, T={args.frames}), "
        f"median of {args.rounds}:",
        "",
        "| pass | wall s | video s per wall s | ratio to decoding alone |",
        "|---|---:|---:|---:|",
    ]
    floor = statistics.median(times["decode only"])
    for name, values in times.items():
        wall = statistics.median(values)
        lines.append(f"| {name} | {wall:.2f} | {args.seconds / wall:.1f} | {floor / wall:.2f} |")
    return lines


def measure_memory(args: argparse.Namespace, folder: Path) -> list[str]:
    """Peak resident memory of a timeline of a short and a long 1080p file (fresh processes)."""
    lines = [
        "",
        "| 1920x1080 30 fps | windows | RSS before MB | peak RSS during MB | growth MB |",
        "|---|---:|---:|---:|---:|",
    ]
    short = folder / "memory_short_1080p.mp4"
    long = folder / "memory_long_1080p.mp4"
    write_video(short, args.short_seconds, 1920, 1080, 30)
    repeats = max(1, int(round(args.long_seconds / args.short_seconds)))
    repeat_video(short, long, repeats)
    for path in (short, long):
        result = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, str(Path(__file__).parent), str(path), args.arch],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        growth = (figures["after_kib"] - figures["before_kib"]) / 1024
        lines.append(
            f"| {figures['duration']:.1f} s | {figures['windows']} "
            f"| {figures['before_kib'] / 1024:.0f} | {figures['after_kib'] / 1024:.0f} "
            f"| {growth:.1f} |"
        )
    short.unlink()
    long.unlink()
    return lines


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
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--live-seconds", type=float, default=0.0, help="also measure live over a stream this long"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [f"class {i}" for i in range(8)]
    lines = [
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.1f}",
    ]
    with tempfile.TemporaryDirectory(prefix="text4vis-timeline-bench-") as tmp:
        folder = Path(tmp)  # every generated video is deleted with it
        if not args.skip_throughput:
            lines += measure_throughput(args, folder, names)
        if not args.skip_memory:
            lines += measure_memory(args, folder)
        if args.live_seconds:
            lines += measure_live(args, folder, names)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
