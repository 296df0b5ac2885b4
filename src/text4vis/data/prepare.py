"""Dataset preparation: list files from class folders, frame extraction, and a readability check.

These are the library side of ``text4vis prepare`` (:mod:`text4vis.commands.prepare`).

- :func:`make_lists`: a folder of class folders (``ROOT/<class>/<video file or frame folder>``)
  -> ``labels.csv`` (classes in sorted folder order) and list files, optionally split into
  train/val with a seed.
- :func:`extract_frames`: every video of a list -> a JPEG frame folder with the short side resized
  (320 px by default, the paper's ``se320`` lists), in parallel worker processes with a progress
  bar; writes the matching frame list.
- :func:`check_list`: opens every entry of a list, decodes its first, middle and last frame, and
  returns (and writes) the unreadable ones with reasons.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
from PIL import Image
from tqdm import tqdm

from text4vis.data.annotations import (
    AnnotationError,
    VideoRecord,
    read_annotations,
    write_annotations,
)
from text4vis.data.decoders import FrameFolderReader, VideoDecodeError, open_video, upright
from text4vis.data.discovery import VIDEO_EXTENSIONS
from text4vis.data.labels import check_distinct_names, write_labels
from text4vis.distributed import is_main_process
from text4vis.errors import DataError, MissingFileError, UsageError

__all__ = [
    "check_list",
    "extract_frames",
    "extract_video_frames",
    "make_lists",
]

logger = logging.getLogger("text4vis.data.prepare")


def _progress(total: int, desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    return tqdm(total=total, desc=desc, unit="video", disable=not (enabled and is_main_process()))


_Job = TypeVar("_Job")
_Result = TypeVar("_Result")


def _run_jobs(
    work: Callable[[_Job], _Result],
    jobs: Sequence[_Job],
    *,
    workers: int,
    desc: str,
    progress: bool,
    chunksize: int,
) -> list[_Result]:
    """Run ``work`` on every job, in order, in ``workers`` processes (1 = in this process)."""
    results: list[_Result] = []
    with _progress(len(jobs), desc, progress) as bar:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(work, jobs, chunksize=chunksize):
                    results.append(result)
                    bar.update(1)
        else:
            for job in jobs:
                results.append(work(job))
                bar.update(1)
    return results


def make_lists(
    root: str | Path,
    out_dir: str | Path,
    *,
    format: str = "video",
    val_fraction: float = 0.0,
    seed: int = 0,
    frame_template: str = "img_{:05d}.jpg",
    start_index: int = 1,
) -> dict[str, Path]:
    """Write ``labels.csv`` and list files for a folder of class folders.

    Paths in the lists are relative to ``out_dir`` (the folder that holds the list), so the lists
    work with an empty ``data.root``.

    Args:
        root: folder with one sub-folder per class.
        out_dir: where ``labels.csv`` and ``train.txt`` (and ``val.txt``) go.
        format: ``video`` (video files inside class folders) or ``frames`` (frame folders).
        val_fraction: share of each class's clips put in ``val.txt`` (0 = everything in train).
        seed: seed of the train/val split.
        frame_template: frame file names (frame folders).
        start_index: number of the first frame file (frame folders).

    Returns:
        ``{"labels": path, "train": path, ("val": path)}``.

    Raises:
        MissingFileError: ``root`` is not a folder.
        ValueError: no class folders, a class without clips, a bad format or fraction.
    """
    root = Path(root)
    out_dir = Path(out_dir)
    if not root.is_dir():
        raise MissingFileError(f"{root} is not a folder of class folders")
    if format not in ("video", "frames"):
        raise UsageError(f"format must be 'video' or 'frames', got {format!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders (expected ROOT/<class>/<clips>)")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train: list[VideoRecord] = []
    val: list[VideoRecord] = []
    for label, name in enumerate(classes):
        folder = root / name
        records = []
        for entry in sorted(folder.iterdir()):
            rel = os.path.relpath(entry, out_dir)
            if format == "video" and entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS:
                records.append(VideoRecord(rel, None, label))
            elif format == "frames" and entry.is_dir():
                reader = FrameFolderReader(
                    entry, frame_template=frame_template, start_index=start_index
                )
                records.append(VideoRecord(rel, reader.num_frames, label))
        if not records:
            what = "video files" if format == "video" else "frame folders"
            raise DataError(f"class folder {folder} has no {what}")
        num_val = int(round(val_fraction * len(records)))
        chosen = set(rng.choice(len(records), size=num_val, replace=False).tolist())
        for i, record in enumerate(records):
            (val if i in chosen else train).append(record)
    # Check everything before writing anything: no half-written output folder.
    check_distinct_names(classes, str(root), AnnotationError)
    spaced = [r.path for r in train + val if any(ch.isspace() for ch in r.path)]
    if spaced:
        shown = ", ".join(repr(p) for p in spaced[:5]) + (" ..." if len(spaced) > 5 else "")
        raise AnnotationError(
            f"{len(spaced)} clip path(s) under {root} contain whitespace, which list files split "
            f"on: {shown}; rename those files or folders (e.g. spaces to underscores) and run "
            "again"
        )
    paths = {
        "labels": write_labels(out_dir / "labels.csv", classes),
        "train": write_annotations(out_dir / "train.txt", train),
    }
    if val:
        paths["val"] = write_annotations(out_dir / "val.txt", val)
    logger.info(
        "%d classes, %d train and %d val clips; lists in %s",
        len(classes),
        len(train),
        len(val),
        out_dir,
    )
    return paths


def extract_video_frames(
    video: str | Path,
    out_folder: str | Path,
    *,
    short_side: int = 320,
    frame_template: str = "img_{:05d}.jpg",
    start_index: int = 1,
    quality: int = 90,
) -> int:
    """Decode every frame of ``video`` and save it as JPEG with the short side resized.

    Returns:
        The number of frames written.

    Raises:
        VideoDecodeError: the video cannot be decoded.
    """
    out_folder = Path(out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    if not os.path.isfile(video) or os.path.getsize(video) == 0:
        raise VideoDecodeError(video, "missing or empty file")
    count = 0
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise VideoDecodeError(video, "the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                width, height = frame.width, frame.height
                scale = short_side / min(width, height)
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                scaled = frame.reformat(width=size[0], height=size[1], format="rgb24")
                image = Image.fromarray(upright(scaled.to_ndarray(), frame.rotation))
                image.save(out_folder / frame_template.format(start_index + count), quality=quality)
                count += 1
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError(video, f"decoding failed after {count} frames ({exc})") from None
    if count == 0:
        raise VideoDecodeError(video, "no frames decoded")
    return count


def _extract_one(args: tuple[str, str, int, str, int, int]) -> tuple[int | None, str]:
    video, out_folder, short_side, template, start_index, quality = args
    try:
        count = extract_video_frames(
            video,
            out_folder,
            short_side=short_side,
            frame_template=template,
            start_index=start_index,
            quality=quality,
        )
    except VideoDecodeError as exc:
        return None, exc.reason
    return count, ""


def _frame_folder_name(list_path: str) -> str:
    """Frame folder of a list entry inside the output folder: the entry's path without suffix,
    with ``..`` and root parts dropped so every folder stays inside the output folder."""
    parts = Path(os.path.normpath(list_path)).with_suffix("").parts
    kept = [p for p in parts if p not in ("..", ".") and p != Path(list_path).anchor]
    return str(Path(*kept))


def extract_frames(
    list_file: str | Path,
    out_dir: str | Path,
    *,
    root: str | Path | None = None,
    short_side: int = 320,
    workers: int = 2,
    frame_template: str = "img_{:05d}.jpg",
    start_index: int = 1,
    quality: int = 90,
    progress: bool = True,
) -> tuple[Path, list[tuple[str, str]]]:
    """Extract the frames of every video of a video list into ``out_dir``.

    Frame folders mirror the list's relative paths without the suffix
    (``a/b.mp4`` -> ``out_dir/a/b/img_00001.jpg``; ``..`` parts are dropped). The frame list ``<list stem>_frames.txt`` in
    ``out_dir`` holds the videos that were extracted; unreadable ones are returned and written to
    ``extract_failures.txt`` (path<TAB>reason).

    Args:
        list_file: video list (``path label`` lines).
        out_dir: output folder.
        root: folder the list's paths are relative to (default: the list's folder).
        short_side: short side of the saved frames in pixels.
        workers: parallel processes (1 = in this process).
        frame_template: frame file names.
        start_index: number of the first frame file.
        quality: JPEG quality.
        progress: show a progress bar.

    Returns:
        (frame list path, [(video path, reason)] of failures).
    """
    list_file = Path(list_file)
    out_dir = Path(out_dir)
    records = read_annotations(list_file)
    base = Path(root) if root is not None else list_file.resolve().parent
    jobs = []
    folders = [_frame_folder_name(record.path) for record in records]
    for record, rel in zip(records, folders):
        jobs.append(
            (
                str(base / record.path),
                str(out_dir / rel),
                short_side,
                frame_template,
                start_index,
                quality,
            )
        )
    results = _run_jobs(
        _extract_one,
        jobs,
        workers=workers,
        desc="extracting frames",
        progress=progress,
        chunksize=1,
    )
    frame_records = []
    failures = []
    for record, rel, job, (count, reason) in zip(records, folders, jobs, results):
        if count is None:
            failures.append((job[0], reason))
            continue
        frame_records.append(VideoRecord(rel, count, record.label))
    out_dir.mkdir(parents=True, exist_ok=True)
    frame_list = write_annotations(out_dir / f"{list_file.stem}_frames.txt", frame_records)
    if failures:
        (out_dir / "extract_failures.txt").write_text("".join(f"{p}\t{r}\n" for p, r in failures))
        logger.warning("%d videos could not be extracted; see %s", len(failures), out_dir)
    return frame_list, failures


def _check_one(args: tuple[str, int | None, str, str, int]) -> str:
    path, num_frames, decoder, template, start_index = args
    try:
        reader = open_video(
            path,
            decoder=decoder,
            frame_template=template,
            start_index=start_index,
            num_frames=num_frames,
        )
        n = reader.num_frames
        reader.frames(sorted({0, n // 2, n - 1}))
    except VideoDecodeError as exc:
        return exc.reason
    return ""


def check_list(
    list_file: str | Path,
    *,
    root: str | Path | None = None,
    decoder: str = "pyav",
    frame_template: str = "img_{:05d}.jpg",
    start_index: int = 1,
    workers: int = 2,
    out: str | Path | None = None,
    progress: bool = True,
) -> list[tuple[str, str]]:
    """Open every entry of a list and decode its first, middle and last frames.

    Args:
        list_file: a video or frame list.
        root: folder the list's paths are relative to (default: the list's folder).
        decoder: video decoder name.
        frame_template: frame file names (frame lists).
        start_index: number of the first frame file (frame lists).
        workers: parallel processes (1 = in this process).
        out: file to write ``path<TAB>reason`` lines of unreadable entries to (always written,
            empty when all are readable).
        progress: show a progress bar.

    Returns:
        ``[(path, reason)]`` of the unreadable entries, in list order.
    """
    list_file = Path(list_file)
    records = read_annotations(list_file)
    base = Path(root) if root is not None else list_file.resolve().parent
    jobs = [
        (str(base / r.path), r.num_frames, decoder, frame_template, start_index) for r in records
    ]
    reasons = _run_jobs(
        _check_one, jobs, workers=workers, desc="checking", progress=progress, chunksize=4
    )
    bad = [(job[0], reason) for job, reason in zip(jobs, reasons) if reason]
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("".join(f"{p}\t{r}\n" for p, r in bad))
    return bad
