"""Seeded synthetic videos for tests and benchmarks, with the frame index written in the pixels.

Every frame carries its own index as a binary code: the top band of the frame is a row of
``CODE_BITS`` blocks, black for 0 and white for 1 (most significant bit first). Blocks this large
and this contrasted survive lossy H.264, JPEG and chroma subsampling, so a test can decode a frame
and read back exactly which frame it got (:func:`read_frame_index`). The rest of the frame is a
seeded moving pattern so that videos differ and codecs have real motion to encode.

:func:`write_mp4` is the one place that encodes video files with PyAV; the demo's synthetic-actions
generator reuses it. :func:`write_synthetic_dataset` writes a small labelled dataset as mp4 files
and/or frame folders with list files and a label CSV in the formats of
:mod:`text4vis.data.annotations`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from text4vis.data.annotations import VideoRecord, write_annotations
from text4vis.data.labels import write_labels

__all__ = [
    "CODE_BITS",
    "SyntheticDataset",
    "code_frames",
    "read_frame_index",
    "write_frame_folder",
    "write_mp4",
    "write_synthetic_dataset",
]

logger = logging.getLogger("text4vis.data.synthetic")

CODE_BITS = 12  # frame indices up to 4095 fit in the code band


def code_frames(
    num_frames: int,
    height: int = 64,
    width: int = 96,
    *,
    seed: int = 0,
    start: int = 0,
) -> np.ndarray:
    """Frames whose top band encodes their index, over a seeded moving pattern.

    Args:
        num_frames: frames to make.
        height: frame height in pixels (at least 32).
        width: frame width in pixels; must allow ``CODE_BITS`` blocks of 4 px or more.
        seed: seed of the background pattern (colours, direction of motion).
        start: index coded in the first frame (frame k carries ``start + k``).

    Returns:
        uint8 array [T, H, W, 3].
    """
    block = width // CODE_BITS
    if block < 4 or height < 32:
        raise ValueError(
            f"synthetic frames of {height}x{width} are too small for a {CODE_BITS}-bit code; "
            f"use height >= 32 and width >= {4 * CODE_BITS}"
        )
    if start + num_frames > 2**CODE_BITS:
        raise ValueError(f"frame indices above {2**CODE_BITS - 1} do not fit the code band")
    rng = np.random.default_rng(seed)
    colour_a = rng.integers(30, 120, size=3)
    colour_b = rng.integers(130, 230, size=3)
    speed = rng.uniform(0.5, 3.0) * rng.choice([-1.0, 1.0])
    band = max(8, height // 4)
    yy, xx = np.mgrid[0 : height - band, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for k in range(num_frames):
        # Background: diagonal stripes sliding with time (seeded speed and colours).
        phase = ((xx + yy + speed * k) // 8) % 2
        frames[k, band:] = np.where(phase[..., None] == 0, colour_a, colour_b).astype(np.uint8)
        code = start + k
        frames[k, :band] = 0
        for bit in range(CODE_BITS):
            if (code >> (CODE_BITS - 1 - bit)) & 1:
                frames[k, :band, bit * block : (bit + 1) * block] = 255
    return frames


def read_frame_index(frame: np.ndarray) -> int:
    """Read back the index coded by :func:`code_frames` from a decoded frame [H, W, 3] (uint8).

    The frame may have been compressed (H.264, JPEG) but not resized or cropped.
    """
    frame = np.asarray(frame)
    height, width = frame.shape[:2]
    block = width // CODE_BITS
    band = max(8, height // 4)
    grey = frame[:band, : block * CODE_BITS].astype(np.float32).mean(axis=-1)
    # Sample the middle of each block, away from edges that compression smears.
    y0, y1 = band // 4, band - band // 4
    value = 0
    for bit in range(CODE_BITS):
        x0, x1 = bit * block + block // 4, (bit + 1) * block - block // 4
        value = (value << 1) | int(grey[y0:y1, x0:x1].mean() > 127.5)
    return value


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    *,
    fps: float = 25.0,
    codec: str = "libx264",
    lossless: bool = False,
    crf: int = 18,
    bframes: int = 2,
    gop: int = 12,
    preset: str | None = None,
    pix_fmt: str | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
) -> Path:
    """Encode frames into a video file with PyAV.

    The container comes from the file suffix (``.mp4``, ``.mkv``, ``.avi`` ...).

    Args:
        path: output file.
        frames: uint8 [T, H, W, 3] RGB frames (H and W even for yuv420p).
        fps: nominal frame rate.
        codec: FFmpeg encoder name: ``libx264`` (default), ``ffv1`` (lossless, use ``.mkv``),
            ``mpeg4`` ...
        lossless: libx264 with ``qp=0`` (lossless in YUV; x264 then encodes no B-frames, so use a
            low ``crf`` such as 1 for a near-lossless stream with B-frames).
        crf: libx264 quality when not lossless (lower is better).
        bframes: consecutive B-frames allowed (libx264/mpeg4); 0 disables them.
        gop: keyframe interval in frames (1 = every frame a keyframe).
        preset: libx264 speed preset (``veryfast`` ...; None = x264's default ``medium``).
        pix_fmt: encoder pixel format (default yuv420p, yuv444p for lossless libx264, ffv1 bgr0).
        pts: presentation timestamps, one per frame and increasing, in ``time_base`` units;
            uneven gaps give a variable-frame-rate file.
        time_base: time base of ``pts`` (default ``1/(1000 * fps)`` rounded to a Fraction).

    Returns:
        The written path.
    """
    path = Path(path)
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if pts is not None and len(pts) != len(frames):
        raise ValueError(f"pts has {len(pts)} values for {len(frames)} frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    options: dict[str, str] = {}
    if codec == "libx264":
        # Deterministic bytes: x264's macroblock-tree rate control (mbtree) made the B-frames of
        # these tiny clips differ between runs once torch was imported in the process (3-5 of 50
        # demo clips per run; the pixels given were equal, so likely a read of uninitialised
        # memory in x264's lookahead); with mbtree=0, 8 of 8 runs of the reproducibility test
        # and 5 of 5 fresh processes gave equal bytes. One encoder thread keeps the output
        # independent of the machine's core count too, and wrote the demo set faster here
        # (5.7 s vs 7.6 s).
        options = {"bf": str(bframes), "g": str(gop), "keyint_min": str(gop), "threads": "1"}
        params = ["mbtree=0"]
        if bframes:
            # Force B-frames: x264 otherwise decides adaptively and drops them for lossless
            # or static input, and tests need them to check presentation order.
            params.append("b-adapt=0")
        options["x264-params"] = ":".join(params)
        options.update({"qp": "0"} if lossless else {"crf": str(crf)})
        if preset is not None:
            options["preset"] = preset
        default_fmt = "yuv444p" if lossless else "yuv420p"
    elif codec == "ffv1":
        default_fmt = "bgr0"
    else:
        options = {"g": str(gop)}
        if bframes:
            options["bf"] = str(bframes)
        default_fmt = "yuv420p"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = pix_fmt or default_fmt
        if pts is not None:
            tb = time_base or Fraction(1, int(round(1000 * fps)))
            stream.codec_context.time_base = tb
            stream.time_base = tb
        for k, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts is not None:
                frame.pts = int(pts[k])
                frame.time_base = stream.codec_context.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(
    folder: str | Path,
    frames: np.ndarray,
    *,
    template: str = "img_{:05d}.jpg",
    start_index: int = 1,
    quality: int = 95,
) -> Path:
    """Write frames [T, H, W, 3] as JPEG files ``template.format(start_index + k)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, array in enumerate(frames):
        Image.fromarray(array).save(folder / template.format(start_index + k), quality=quality)
    return folder


@dataclass
class SyntheticDataset:
    """Paths of a dataset written by :func:`write_synthetic_dataset`."""

    root: Path  # folder holding everything below
    labels: Path  # label CSV `id,name`
    video_list: Path | None  # `videos/..mp4 label` lines (None when not written)
    frame_list: Path | None  # `frames/.. num_frames label` lines (None when not written)
    num_frames: list[int]  # frames of each video, in list order
    labels_of: list[int]  # label of each video, in list order


def write_synthetic_dataset(
    root: str | Path,
    *,
    num_classes: int = 3,
    videos_per_class: int = 2,
    num_frames: int | Sequence[int] = 24,
    height: int = 64,
    width: int = 96,
    seed: int = 0,
    videos: bool = True,
    frame_folders: bool = True,
    fps: float = 25.0,
    list_name: str = "list",
) -> SyntheticDataset:
    """Write a small labelled dataset of index-coded clips: mp4 files and/or JPEG frame folders.

    Layout under ``root``: ``labels.csv``, ``videos/<class>/<k>.mp4`` with ``<list_name>_videos.txt``
    (`path label`), ``frames/<class>/<k>/img_00001.jpg ...`` with ``<list_name>_frames.txt``
    (`dir num_frames label`). Paths in list files are relative to ``root``.

    Args:
        root: output folder.
        num_classes: number of classes (named ``class_0`` ...).
        videos_per_class: clips per class.
        num_frames: frames per clip (one value, or one per clip in list order).
        height: frame height.
        width: frame width.
        seed: seed of every pattern (the same seed gives the same bytes of pixels).
        videos: write mp4 files.
        frame_folders: write frame folders.
        fps: frame rate of the mp4 files.
        list_name: prefix of the list files.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    total = num_classes * videos_per_class
    lengths = [int(num_frames)] * total if isinstance(num_frames, int) else list(num_frames)
    if len(lengths) != total:
        raise ValueError(f"num_frames has {len(lengths)} values for {total} clips")
    class_names = [f"class_{c}" for c in range(num_classes)]
    labels_path = write_labels(root / "labels.csv", class_names)
    video_records: list[VideoRecord] = []
    frame_records: list[VideoRecord] = []
    labels_of: list[int] = []
    item = 0
    for label in range(num_classes):
        for k in range(videos_per_class):
            frames = code_frames(lengths[item], height, width, seed=seed * 100_003 + item)
            if videos:
                rel = Path("videos") / class_names[label] / f"{k}.mp4"
                write_mp4(root / rel, frames, fps=fps)
                video_records.append(VideoRecord(str(rel), None, label))
            if frame_folders:
                rel = Path("frames") / class_names[label] / str(k)
                write_frame_folder(root / rel, frames)
                frame_records.append(VideoRecord(str(rel), lengths[item], label))
            labels_of.append(label)
            item += 1
    video_list = (
        write_annotations(root / f"{list_name}_videos.txt", video_records) if videos else None
    )
    frame_list = (
        write_annotations(root / f"{list_name}_frames.txt", frame_records)
        if frame_folders
        else None
    )
    logger.debug("wrote %d synthetic clips under %s", total, root)
    return SyntheticDataset(root, labels_path, video_list, frame_list, lengths, labels_of)
