"""Labels while a stream plays: a rolling window over the latest frames of a live source.

:meth:`text4vis.predict.Predictor.live` returns a :class:`LiveSession`, an iterator of
:class:`LiveResult`::

    session = predictor.live("udp://127.0.0.1:5000", window=4, stride=2, labels=["a", "b"])
    for result in session:
        if result.changed:
            print(result.stream_time, result.top.label)
    session.summary  # LiveSummary: frames, windows, skipped frames, delays, why it ended

Two threads and a bounded buffer, so that a slow model never makes a queue grow:

- the reader thread decodes the source (PyAV: a camera device, any URL FFmpeg reads, or ``-``
  for standard input) into a ring buffer of the latest frames (about two windows' worth; older
  frames fall out). Pixels are converted only for the frames a window samples.
- the caller's thread waits until the stream has played ``stride`` seconds past the last
  window, then labels the window of the latest ``window`` seconds (the model's T frames at the
  centres of T equal parts, as for a timeline). When the model is slower than the stream, the
  frames that arrived meanwhile and fall in no window are skipped and counted
  (``skipped_frames``).

A source that fails (a connection reset, a read timeout) is reported with FFmpeg's reason and
reopened up to ``retry`` times; the end of the stream (or :meth:`LiveSession.stop`, or Ctrl-C in
the command) ends the iteration, and :attr:`LiveSession.summary` says how it went.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from text4vis.data.streams import PyAVFrameStream, TimedFrame, check_window, sample_times
from text4vis.errors import UsageError, VideoDecodeError
from text4vis.timeline import LabelScore, _ranked, embed_windows, frame_transform

__all__ = ["LiveResult", "LiveSession", "LiveSummary"]

logger = logging.getLogger("text4vis.live")


@dataclass
class LiveResult:
    """The labels of the latest window of a live stream."""

    stream_time: float  # seconds of stream time at the window's end (its latest frame)
    start: float  # stream time of the window's start
    delay: float  # wall seconds from the arrival of the window's latest frame to this result
    labels: list[LabelScore]
    changed: bool  # the top label differs from the previous window's (True for the first)
    skipped_frames: int  # frames since the previous window that no window covered

    @property
    def top(self) -> LabelScore:
        """The best label."""
        return self.labels[0]

    def to_dict(self) -> dict[str, Any]:
        """The JSON line of ``--live --json``."""
        return {
            "stream_time": round(self.stream_time, 4),
            "start": round(self.start, 4),
            "delay": round(self.delay, 4),
            "label": self.top.label,
            "score": self.top.score,
            "labels": [entry.to_dict() for entry in self.labels],
            "changed": self.changed,
            "skipped_frames": self.skipped_frames,
        }


@dataclass
class LiveSummary:
    """How a live session went."""

    source: str
    ended: str = "running"  # "end of stream", "stopped", or "failed: REASON"
    frames: int = 0  # frames received
    windows: int = 0  # windows labelled
    skipped_frames: int = 0  # frames in no labelled window
    stream_seconds: float = 0.0  # stream time received
    retries: int = 0  # times the source was reopened
    delays: list[float] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """Whether it ended without a failure."""
        return not self.ended.startswith("failed")

    def to_dict(self) -> dict[str, Any]:
        """Counts and the median and maximum delay (seconds; None without windows)."""
        return {
            "source": self.source,
            "ended": self.ended,
            "frames": self.frames,
            "windows": self.windows,
            "skipped_frames": self.skipped_frames,
            "stream_seconds": round(self.stream_seconds, 3),
            "retries": self.retries,
            "delay_median": statistics.median(self.delays) if self.delays else None,
            "delay_max": max(self.delays) if self.delays else None,
        }


class _Ring:
    """The latest frames, their serial numbers and arrival times; a condition wakes the model."""

    def __init__(self, capacity: int) -> None:
        self.frames: deque[tuple[int, TimedFrame, float]] = deque(maxlen=capacity)
        self.condition = threading.Condition()
        self.serial = 0  # frames received so far
        self.finished: str | None = None  # why the reader stopped (None while it runs)

    def push(self, frame: TimedFrame) -> None:
        with self.condition:
            self.frames.append((self.serial, frame, time.monotonic()))
            self.serial += 1
            self.condition.notify_all()

    def finish(self, reason: str) -> None:
        with self.condition:
            self.finished = reason
            self.condition.notify_all()


def _open_options(source: str, timeout: float) -> tuple[dict[str, str], str | None]:
    """FFmpeg options and demuxer for a source: a read timeout for network streams (a stall
    becomes an error instead of a hang), ``v4l2`` for a camera device."""
    if source.startswith("/dev/video"):
        return {}, "v4l2"
    if "://" in source:
        micro = str(int(timeout * 1e6))
        return {"rw_timeout": micro, "timeout": micro}, None
    return {}, None


class LiveSession:
    """An iterator of :class:`LiveResult` over a live source (see the module doc).

    Args:
        predictor: the predictor whose model, transform and classifier label the windows.
        source: a camera device, a URL FFmpeg reads, a file, or ``-`` (standard input).
        window: seconds of the latest frames labelled each time.
        stride: stream seconds between windows.
        labels: label names (None: the model's own classes).
        top_k: labels per result.
        retry: times a failed source is reopened.
        timeout: seconds a network read may stall before it counts as a failure.
    """

    def __init__(
        self,
        predictor: Any,
        source: str,
        *,
        window: float,
        stride: float,
        labels: Sequence[str] | None = None,
        top_k: int | None = 5,
        retry: int = 0,
        timeout: float = 10.0,
    ) -> None:

        check_window(window, stride)
        if retry < 0:
            raise UsageError(f"retry must be 0 or more, got {retry}")
        self.predictor = predictor
        self.source = str(source)
        self.window = float(window)
        self.stride = float(stride)
        self.top_k = top_k
        self.retry = retry
        self.timeout = timeout
        self.names, self.weight = predictor.classifier_for(labels)
        self.summary = LiveSummary(self.source)
        self._stop = threading.Event()
        self._ring: _Ring | None = None

    def stop(self) -> None:
        """End the session at the next window (the iteration then finishes cleanly)."""
        self._stop.set()
        if self._ring is not None:
            self._ring.finish("stopped")

    # The reader thread ------------------------------------------------------------------------

    def _read(self, ring: _Ring) -> None:

        options, fmt = _open_options(self.source, self.timeout)
        offset = 0.0  # stream time carried over a reconnection
        attempt = 0
        while not self._stop.is_set():
            last = offset
            received = False  # frames came in this attempt (a drop, not a failure to open)
            try:
                stream = PyAVFrameStream(self.source, options=options, format=fmt, live=True)
                try:
                    for frame in stream:
                        if self._stop.is_set():
                            break
                        last = offset + frame.time
                        received = True
                        ring.push(TimedFrame(last, frame.rgb))
                finally:
                    stream.close()
                ring.finish("stopped" if self._stop.is_set() else "end of stream")
                return
            except VideoDecodeError as exc:
                reason = exc.reason
            except Exception as exc:  # reported to the consumer, never lost in the thread
                reason = f"{type(exc).__name__}: {exc}"
            if attempt >= self.retry:
                ring.finish(f"failed: {reason}")
                return
            attempt += 1
            self.summary.retries = attempt
            logger.warning(
                "%s: %s (%s); retrying (%d of %d)",
                self.source,
                "the stream dropped" if received else "the stream could not be opened",
                reason,
                attempt,
                self.retry,
            )
            offset = last + 1e-3
            self._stop.wait(min(2.0, 0.5 * attempt))

    # The model's side -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[LiveResult]:

        transform = frame_transform(self.predictor)  # imports torchvision: before the clock
        # About two windows of frames at up to 60 fps: bounded whatever the model's speed.
        ring = self._ring = _Ring(capacity=int(self.window * 60 * 2) + 16)
        reader = threading.Thread(
            target=self._read, args=(ring,), name="text4vis-live", daemon=True
        )
        reader.start()
        num_segments = self.predictor.data.num_segments
        next_due = self.window
        last_serial = -1  # serial of the latest frame of the previous window
        previous_top: str | None = None
        summary = self.summary
        try:
            while True:
                with ring.condition:
                    while True:
                        latest = ring.frames[-1] if ring.frames else None
                        if ring.finished is not None or (
                            latest is not None and latest[1].time >= next_due
                        ):
                            break
                        ring.condition.wait(timeout=0.5)
                    finished = ring.finished
                    snapshot = list(ring.frames)
                    summary.frames = ring.serial
                if latest is not None:
                    summary.stream_seconds = latest[1].time
                due = latest is not None and latest[1].time >= next_due
                fresh = latest is not None and latest[0] > last_serial
                if finished is not None and not (finished == "end of stream" and fresh):
                    break  # stopped or failed; or ended with every frame already labelled
                if not (due or fresh):
                    break
                serial_now, newest, arrived = snapshot[-1]
                end = newest.time
                start = round(max(0.0, end - self.window), 6)  # 1.1 - 1.0 is 0.1000...09
                chosen = []
                for t in sample_times(start, end, num_segments):
                    on_screen = [item for item in snapshot if item[1].time <= t]
                    chosen.append(on_screen[-1] if on_screen else snapshot[0])
                # A frame shown at the window's start (within a microsecond) is in the window.
                first_serial = min(item[0] for item in snapshot if item[1].time >= start - 1e-6)
                skipped = max(0, first_serial - last_serial - 1)
                converted: dict[int, Any] = {}
                clip = []
                for serial, frame, _ in chosen:
                    if serial not in converted:
                        converted[serial] = transform(frame.rgb())
                    clip.append(converted[serial])
                embedding = embed_windows(self.predictor, [clip])  # [1, D]
                probabilities = self.predictor.scores(embedding[:, None], self.weight)[0]
                labels = _ranked(probabilities, self.names, self.top_k)
                delay = time.monotonic() - arrived
                result = LiveResult(
                    end, start, delay, labels, labels[0].label != previous_top, skipped
                )
                previous_top = labels[0].label
                last_serial = serial_now
                next_due = end + self.stride
                summary.windows += 1
                summary.skipped_frames += skipped
                summary.delays.append(delay)
                if skipped:
                    logger.info("skipped %d frames: the model is slower than the stream", skipped)
                yield result
                if finished is not None:
                    break
        finally:
            self._stop.set()
            with ring.condition:
                summary.frames = ring.serial
                reason = ring.finished
            summary.ended = reason if reason is not None else "stopped"
            reader.join(timeout=2)
        if not math.isfinite(summary.stream_seconds):
            summary.stream_seconds = 0.0
