"""Frames in presentation order with their times, read once front to back: long videos, streams.

The readers of :mod:`text4vis.data.decoders` locate frames by index and seek to them, which suits
a short clip sampled 8 times. A timeline of a long video (:mod:`text4vis.timeline`) instead needs
frames spread over the whole file, window after window; seeking once per window would decode each
group of pictures again. This module decodes the file once, in order, and keeps only the frames
the pending windows need, so the cost grows linearly with the duration and memory stays bounded
whatever the length.

- :class:`TimedFrame`: a decoded frame and its presentation time in seconds from the start of the
  video (``pts * time_base`` minus the stream's start time, so a file written with an offset
  starts at 0 and a variable-frame-rate file keeps its real times). Its pixels (uint8 RGB, turned
  upright by the display matrix of a rotated file) are produced only when asked for.
- :func:`open_frame_stream`: a video file (PyAV), a frame folder (times from ``fps``), or a live
  source (a camera device, a URL FFmpeg reads, ``-`` for standard input).
- :func:`plan_windows` and :func:`iter_windows`: the windows ``[start, end)`` of a timeline and,
  per window, its T frames sampled at the centres of T equal segments (as the evaluation sampler
  does with frame indices), each frame being the one on screen at that time.
- :func:`prefetch`: run an iterator in a thread, a bounded number of items ahead.
"""

from __future__ import annotations

import abc
import contextlib
import heapq
import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from text4vis.data.decoders import FrameFolderReader, _to_rgb, upright
from text4vis.errors import UsageError, VideoDecodeError

__all__ = [
    "FrameStream",
    "FolderFrameStream",
    "PyAVFrameStream",
    "TimedFrame",
    "Window",
    "check_window",
    "iter_windows",
    "open_frame_stream",
    "plan_windows",
    "prefetch",
    "sample_times",
    "upright",
    "window_spans",
]

logger = logging.getLogger("text4vis.data.streams")

_Item = TypeVar("_Item")


class TimedFrame:
    """One decoded frame: its time, and its pixels on demand.

    Args:
        time: presentation time in seconds from the start of the video.
        load: returns the uint8 [H, W, 3] RGB pixels (upright); called at most once.
    """

    __slots__ = ("_load", "_rgb", "time")

    def __init__(self, time: float, load: Callable[[], np.ndarray]) -> None:
        self.time = float(time)
        self._load: Callable[[], np.ndarray] | None = load
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        """uint8 [H, W, 3] RGB, upright (converted on the first call, then kept)."""
        if self._rgb is None:
            assert self._load is not None
            self._rgb = self._load()
            self._load = None  # drops the decoded picture: the RGB copy is all that is needed
        return self._rgb

    def __repr__(self) -> str:
        return f"TimedFrame(time={self.time:.3f})"


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


class FrameStream(abc.ABC):
    """Frames of one source in presentation order, read once.

    Iterate it for :class:`TimedFrame` objects; ``duration`` is the length in seconds when the
    container says (None for live sources and frame folders without ``fps``).
    Close it (or use it as a context manager) to release the file or connection.
    """

    path: str
    duration: float | None  # seconds, as the container states it (None: unknown)
    frame_duration: float = 0.04  # seconds per frame at the nominal rate

    @abc.abstractmethod
    def __iter__(self) -> Iterator[TimedFrame]:
        """The frames, in presentation order."""

    def close(self) -> None:  # noqa: B027 (a default: a source with nothing to release)
        """Release the source."""

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_container(source: Any, path: str, options: dict[str, str] | None, fmt: str | None) -> Any:
    import av

    try:
        return av.open(source, mode="r", format=fmt, options=options or {})
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(path, f"not a readable video source ({exc})") from None


class PyAVFrameStream(FrameStream):
    """A video file or live source decoded by PyAV, front to back.

    Times are ``pts * time_base`` minus the stream's start time (the container's when the stream
    has none; else the first frame's time), so the first frame is at (about) 0 whatever offset the
    file was written with. A frame without a timestamp takes FFmpeg's best-effort one.

    Args:
        path: file, URL, device, or ``-`` for standard input.
        threads: decoder threads (0 = FFmpeg's choice).
        options: FFmpeg options for opening (e.g. ``{"rw_timeout": "5000000"}``).
        format: force a demuxer (``v4l2`` for a camera, ``mpegts`` ...); None = probe.
        live: a live source: no duration, times start at the first frame received.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int = 0,
        options: dict[str, str] | None = None,
        format: str | None = None,  # noqa: A002 - FFmpeg's name for the demuxer
        live: bool = False,
    ) -> None:
        import sys

        self.path = str(path)
        self.live = live
        if self.path == "-":
            source: Any = sys.stdin.buffer
        else:
            if not live and not os.path.exists(self.path):
                raise VideoDecodeError(self.path, "no such file")
            if not live and os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
                raise VideoDecodeError(self.path, "the file is empty (0 bytes)")
            source = self.path
        self._container: Any = _open_container(source, self.path, options, format)
        if not self._container.streams.video:
            self.close()
            raise VideoDecodeError(self.path, "the source has no video stream")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.thread_count = threads
        self._stream = stream
        self._time_base = float(stream.time_base) if stream.time_base is not None else None
        self.start_time: float | None = None
        if not live:
            if stream.start_time is not None and self._time_base is not None:
                self.start_time = stream.start_time * self._time_base
            elif self._container.start_time is not None:
                self.start_time = self._container.start_time / 1e6  # AV_TIME_BASE
        self.duration = None if live else self._duration()
        rate = stream.average_rate or stream.guessed_rate
        self.frame_duration = 1.0 / float(rate) if rate else 0.04

    def _duration(self) -> float | None:
        stream = self._stream
        if stream.duration is not None and self._time_base is not None:
            return float(stream.duration * self._time_base)
        if self._container.duration is not None:
            return float(self._container.duration / 1e6)
        return None

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __iter__(self) -> Iterator[TimedFrame]:
        import av

        if self._container is None:
            raise VideoDecodeError(self.path, "the stream was closed")
        last = -math.inf
        frames = self._container.decode(self._stream)
        try:
            with contextlib.closing(frames):  # a stream stopped early frees its packet
                for frame in frames:
                    stamp = frame.pts if frame.pts is not None else frame.best_effort_timestamp
                    if stamp is None or self._time_base is None:
                        raise VideoDecodeError(
                            self.path,
                            "frames carry no timestamps, so their times are unknown; remux the "
                            "file (ffmpeg -i IN -c copy OUT.mp4)",
                        )
                    seconds = stamp * self._time_base
                    if self.start_time is None:  # live: the clock starts at the first frame
                        self.start_time = seconds
                    seconds -= self.start_time
                    if seconds <= last:  # a repeated or out-of-order stamp: keep time increasing
                        logger.debug("%s: frame at %.4f s after %.4f s", self.path, seconds, last)
                        continue
                    last = seconds
                    rotation = frame.rotation

                    def load(frame: Any = frame, rotation: float = rotation) -> np.ndarray:
                        return upright(_to_rgb(frame), rotation)

                    yield TimedFrame(seconds, load)
        except VideoDecodeError:
            raise
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoDecodeError(self.path, f"decoding failed ({exc})") from None


class FolderFrameStream(FrameStream):
    """A frame folder read as a stream: frame k is at ``k / fps`` seconds.

    Args:
        path: the folder.
        fps: frames per second the frames were extracted at.
        frame_template: file name of frame k, formatted with ``start_index + k``.
        start_index: number of the first frame's file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float,
        frame_template: str = "img_{:05d}.jpg",
        start_index: int = 1,
    ) -> None:

        if not fps or fps <= 0:
            raise UsageError(f"fps must be positive, got {fps}")
        self.path = str(path)
        self.fps = float(fps)
        self._reader = FrameFolderReader(
            path, frame_template=frame_template, start_index=start_index
        )
        self.duration = self._reader.num_frames / self.fps
        self.frame_duration = 1.0 / self.fps

    def __iter__(self) -> Iterator[TimedFrame]:
        reader = self._reader
        for k in range(reader.num_frames):

            def load(k: int = k) -> np.ndarray:
                return reader.frames([k])[0]  # only the frames a window samples are decoded

            yield TimedFrame(k / self.fps, load)


def open_frame_stream(
    path: str | Path,
    *,
    fps: float | None = None,
    frame_template: str = "img_{:05d}.jpg",
    start_index: int = 1,
    threads: int = 0,
) -> FrameStream:
    """A video file or frame folder as a :class:`FrameStream` (read once, front to back).

    Args:
        path: a video file, or a folder of frame images.
        fps: the frame rate of a frame folder (required there: a folder holds no times).
        frame_template: frame-folder file names.
        start_index: number of the first frame file in a folder.
        threads: PyAV decoder threads (0 = FFmpeg's choice).

    Raises:
        VideoDecodeError: the file or folder cannot be read.
        UsageError: a frame folder without ``fps``.
    """
    if os.path.isdir(path):
        if fps is None:
            raise UsageError(
                f"{path}: a frame folder holds no timestamps; give its frame rate "
                "(fps=..., --fps N) to label it by time"
            )
        return FolderFrameStream(
            path, fps=fps, frame_template=frame_template, start_index=start_index
        )
    return PyAVFrameStream(path, threads=threads)


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------


@dataclass
class Window:
    """One window of a timeline and its sampled frames.

    ``frames`` holds, per sample time, what ``transform`` made of the frame on screen then (by
    default the uint8 [H, W, 3] RGB frame); ``frame_times`` are the times of those frames.
    """

    index: int
    start: float
    end: float
    sample_times: list[float]
    frames: list[Any]
    frame_times: list[float]


def plan_windows(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """The windows ``(start, end)`` of a video of ``duration`` seconds.

    Windows start at 0, ``stride``, ``2 * stride`` ... and last ``window`` seconds; the last one is
    the first that reaches the end of the video, cut to it (so every moment is covered and no
    window lies wholly inside another at the end). A video shorter than a window gets one window
    over the whole video.

    Raises:
        UsageError: a window or stride that is not positive, or a stride longer than the window
            (parts of the video would be in no window).
    """
    check_window(window, stride)
    if duration <= 0:
        return []
    spans = []
    k = 0
    while True:
        start = _seconds(k * stride)
        end = min(_seconds(start + window), duration)
        spans.append((start, end))
        if start + window >= duration - 1e-9:
            return spans
        k += 1


def _seconds(value: float) -> float:
    """A time rounded to the microsecond: ``3 * 0.1`` is 0.3, not 0.30000000000000004."""
    return round(value, 6)


def check_window(window: float, stride: float) -> None:
    """Raise :class:`UsageError` unless ``0 < stride <= window``."""
    if not (window > 0 and math.isfinite(window)):
        raise UsageError(f"window must be a positive number of seconds, got {window}")
    if not (stride > 0 and math.isfinite(stride)):
        raise UsageError(f"stride must be a positive number of seconds, got {stride}")
    if stride > window:
        raise UsageError(
            f"stride {stride} s is longer than the window {window} s: the video between windows "
            "would be labelled by none; use a stride at most the window"
        )


def sample_times(start: float, end: float, num_segments: int) -> list[float]:
    """The centres of ``num_segments`` equal segments of ``[start, end)`` (the evaluation
    sampler's rule, in seconds instead of frame indices)."""
    span = (end - start) / num_segments
    return [start + (j + 0.5) * span for j in range(num_segments)]


def window_spans(
    duration_hint: float | None, window: float, stride: float
) -> Iterator[tuple[float, float]]:
    """:func:`plan_windows` for the duration the container states, then, should the frames go on
    past it (a header that under-states the length, a stream without one), windows of the full
    length every ``stride`` seconds: :func:`iter_windows` takes only those the frames reach."""
    planned = plan_windows(duration_hint, window, stride) if duration_hint else []
    yield from planned
    k = len(planned)
    while True:
        start = _seconds(k * stride)
        yield (start, _seconds(start + window))
        k += 1


def iter_windows(
    frames: Iterable[TimedFrame],
    spans: Iterable[tuple[float, float]],
    num_segments: int,
    transform: Callable[[np.ndarray], Any] | None = None,
    *,
    path: str = "the video",
    frame_duration: float = 0.04,
    end_out: list[float] | None = None,
) -> Iterator[Window]:
    """Windows with their sampled frames, from one pass over ``frames``.

    Each window gets ``num_segments`` frames: at each of its sample times (:func:`sample_times`)
    the frame on screen then, that is the last frame whose time is at or before it (the first
    frame for times before it, the last frame for times after the end). A frame is converted to
    RGB and transformed once however many windows sample it, and only when one does; at most the
    windows that overlap the current time are held, so memory does not grow with the length.

    Args:
        frames: frames in increasing time.
        spans: ``(start, end)`` per window, in increasing start (:func:`plan_windows`,
            :func:`window_spans`); may be endless (windows are taken from it only as the frames
            reach them).
        num_segments: T, frames per window.
        transform: applied to each sampled uint8 [H, W, 3] frame (e.g. resize and crop).
        path: the source, for messages.
        frame_duration: how long the last frame is shown when it is the only one.
        end_out: a list that receives the end of the video (the last frame's time plus the gap
            before it) once the frames are exhausted.

    Windows the frames never reach are left out, and so is a window after one that already
    reaches the end; the last window's end is cut to the end of the video.

    Yields:
        :class:`Window` objects in order.

    Raises:
        VideoDecodeError: the source has no frames.
    """
    convert = transform or (lambda rgb: rgb)
    span_iter = iter(spans)
    upcoming = next(span_iter, None)
    pending: dict[int, Window] = {}
    filled: dict[int, int] = {}
    heap: list[tuple[float, int, int]] = []  # (sample time, window index, slot)
    next_index = 0  # of the next window to open
    next_out = 0  # of the next window to yield
    previous: TimedFrame | None = None
    before_last: float | None = None
    last_end = [-math.inf]  # end of the last window yielded

    def open_until(time: float) -> None:
        nonlocal upcoming, next_index
        while upcoming is not None and upcoming[0] <= time:
            start, end = upcoming
            times = sample_times(start, end, num_segments)
            pending[next_index] = Window(
                next_index, start, end, times, [None] * num_segments, [math.nan] * num_segments
            )
            filled[next_index] = 0
            for slot, t in enumerate(times):
                heapq.heappush(heap, (t, next_index, slot))
            next_index += 1
            upcoming = next(span_iter, None)

    def assign(frame: TimedFrame, value: Any, before: float) -> None:
        while heap and heap[0][0] < before:
            _, index, slot = heapq.heappop(heap)
            window = pending[index]
            window.frames[slot] = value
            window.frame_times[slot] = frame.time
            filled[index] += 1

    def ready() -> Iterator[Window]:
        nonlocal next_out
        while next_out in pending and filled[next_out] == num_segments:
            filled.pop(next_out)
            yield pending.pop(next_out)
            next_out += 1

    unset = object()
    previous_value: Any = unset  # the previous frame transformed, once some window sampled it
    for frame in frames:
        open_until(frame.time)
        frame_value: Any = unset
        if heap and heap[0][0] < frame.time:  # samples shown before this frame arrived
            if previous is None:  # times before the first frame: it stands in
                frame_value = convert(frame.rgb())
                assign(frame, frame_value, frame.time)
            else:
                if previous_value is unset:
                    previous_value = convert(previous.rgb())
                assign(previous, previous_value, frame.time)
        before_last = previous.time if previous is not None else None
        previous, previous_value = frame, frame_value
        for window in ready():
            last_end[0] = window.end
            yield window
        if upcoming is None and not pending:
            return  # every window is done: the rest of the file is not needed
    if previous is None:
        raise VideoDecodeError(path, "the video has no frames")
    # The last frame stays on screen as long as the gap before it (one frame at a steady rate).
    gap = previous.time - before_last if before_last is not None else frame_duration
    video_end = previous.time + gap
    if end_out is not None:
        end_out.append(video_end)
    open_until(previous.time)  # windows starting after the last frame are not shown at all
    if heap:  # times after the last frame's: it stays on screen
        if previous_value is unset:
            previous_value = convert(previous.rgb())
        assign(previous, previous_value, math.inf)
    for window in ready():
        if window.index > 0 and last_end[0] >= video_end - 1e-6:
            continue  # the window before already reaches the end
        window.end = min(window.end, video_end)
        yield window


# ----------------------------------------------------------------------------------------------
# Prefetching
# ----------------------------------------------------------------------------------------------


_DONE = object()


def prefetch(items: Iterable[_Item], maxsize: int) -> Iterator[_Item]:
    """Iterate ``items`` in a background thread, at most ``maxsize`` items ahead.

    Decoding (PyAV) and the model (torch) both release the GIL, so a window is assembled while
    the previous batch runs through the model. An exception in the thread is raised here; closing
    the returned generator early stops the thread at its next item.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)

    thread = threading.Thread(target=work, name="text4vis-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                buffer.get_nowait()
        thread.join(timeout=5)
