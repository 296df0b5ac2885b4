"""A timeline of labels over a long video: every window labelled, runs of one label merged.

:meth:`text4vis.predict.Predictor.timeline` is the entry point; this module holds its typed
results and the steps after the model (smoothing, merging), which are pure functions of the
window probabilities::

    timeline = predictor.timeline("match.mp4", window=4, stride=2, labels=["serve", "rally"])
    timeline.segments   # [TimelineSegment(start=0.0, end=13.0, label="serve", score=0.81), ...]
    timeline.to_dict()  # {"video", "duration", "window", "stride", "smooth", "windows", "segments"}

How a video becomes a timeline:

1. Windows ``[start, end)`` of ``window`` seconds every ``stride`` seconds
   (:func:`text4vis.data.streams.plan_windows`); the model's T frames of each window are the frames
   on screen at the centres of T equal parts of it (the evaluation sampler's rule, by time).
2. The file is decoded once, front to back (:func:`text4vis.data.streams.iter_windows`); each
   sampled frame goes through the predictor's test transform (resize, centre crop) as soon as it
   is decoded, so only the windows overlapping the current time are held.
3. Each window's scores are the softmax over the labels of ``logit_scale * cos(video, W)``,
   exactly as :meth:`~text4vis.predict.Predictor.predict` scores a clip.
4. Optionally the probabilities are smoothed: window i takes the mean of the probabilities of the
   ``smooth`` windows centred on it (fewer at the ends). The windows' ranked labels are then those
   of the smoothed probabilities, so the segments below merge exactly what the windows show.
5. Segments: consecutive windows with the same top label merged. Overlapping windows would give
   overlapping spans, so each window stands for the part of the video nearer its centre than
   any other window's centre (halfway between neighbouring centres; the first from 0, the last to
   the end): the segments tile the video, and a change of label is placed halfway between the
   centres of the last window of one label and the first of the next. A segment's score is the
   mean probability of its label over its windows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from text4vis.data.streams import (
    check_window,
    iter_windows,
    open_frame_stream,
    prefetch,
    window_spans,
)
from text4vis.data.transforms import EvalTransform
from text4vis.errors import UsageError
from text4vis.runtime import autocast_context

__all__ = [
    "LabelScore",
    "Timeline",
    "TimelineSegment",
    "TimelineWindow",
    "embed_video_windows",
    "merge_segments",
    "smooth_probabilities",
]

logger = logging.getLogger("text4vis.timeline")


@dataclass
class LabelScore:
    """One label and its probability."""

    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """``{"label", "score"}``."""
        return {"label": self.label, "score": self.score}


@dataclass
class TimelineWindow:
    """One window of the video and its ranked labels (best first)."""

    start: float  # seconds from the start of the video
    end: float
    labels: list[LabelScore]

    @property
    def top(self) -> LabelScore:
        """The best label."""
        return self.labels[0]

    def to_dict(self) -> dict[str, Any]:
        """``{"start", "end", "labels": [{"label", "score"}, ...]}``."""
        return {
            "start": self.start,
            "end": self.end,
            "labels": [entry.to_dict() for entry in self.labels],
        }


@dataclass
class TimelineSegment:
    """A run of consecutive windows with the same top label."""

    start: float  # seconds
    end: float
    label: str
    score: float  # mean probability of the label over the run's windows
    num_windows: int = 1

    def to_dict(self) -> dict[str, Any]:
        """``{"start", "end", "label", "score", "windows"}``."""
        return {
            "start": self.start,
            "end": self.end,
            "label": self.label,
            "score": self.score,
            "windows": self.num_windows,
        }


@dataclass
class Timeline:
    """The labels of a video over time (or why it could not be read)."""

    video: str  # the path as given
    duration: float = 0.0  # seconds
    window: float = 0.0
    stride: float = 0.0
    smooth: int = 1  # windows averaged per window before ranking (1 = none)
    windows: list[TimelineWindow] = field(default_factory=list)
    segments: list[TimelineSegment] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the video was labelled."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON schema: ``{"video", "duration", "window", "stride", "smooth", "windows",
        "segments"}``, or ``{"video", "error"}``."""
        if self.error is not None:
            return {"video": self.video, "error": self.error}
        return {
            "video": self.video,
            "duration": self.duration,
            "window": self.window,
            "stride": self.stride,
            "smooth": self.smooth,
            "windows": [w.to_dict() for w in self.windows],
            "segments": [s.to_dict() for s in self.segments],
        }


# ----------------------------------------------------------------------------------------------
# After the model: pure functions
# ----------------------------------------------------------------------------------------------


def smooth_probabilities(probabilities: torch.Tensor, size: int) -> torch.Tensor:
    """Centred moving average over windows: ``[N, C] -> [N, C]``.

    Row i is the mean of rows ``i - (size - 1) // 2 .. i + size // 2`` that exist (fewer at the
    ends), so rows still sum to 1. ``size`` 1 returns a copy.
    """

    if size < 1:
        raise UsageError(f"smooth must be at least 1 window, got {size}")
    n = probabilities.shape[0]
    cumulative = torch.cat(
        [torch.zeros(1, probabilities.shape[1]), probabilities.double().cumsum(0)]
    )  # [N+1, C]
    rows = torch.arange(n)
    low = (rows - (size - 1) // 2).clamp(min=0)
    high = (rows + size // 2 + 1).clamp(max=n)
    counts = (high - low).unsqueeze(1).double()  # [N, 1]
    return ((cumulative[high] - cumulative[low]) / counts).to(probabilities.dtype)


def merge_segments(
    spans: Sequence[tuple[float, float]],
    probabilities: torch.Tensor,
    names: Sequence[str],
    duration: float,
) -> list[TimelineSegment]:
    """Runs of consecutive windows with the same top label (see the module doc for the spans).

    Args:
        spans: ``(start, end)`` per window, in order.
        probabilities: ``[N, C]`` window probabilities (smoothed or not).
        names: the C label names.
        duration: the video's length in seconds (the last segment's end).
    """
    if not spans:
        return []
    top = probabilities.argmax(dim=1).tolist()
    centres = [(start + end) / 2 for start, end in spans]
    bounds = [0.0]
    bounds += [(a + b) / 2 for a, b in zip(centres, centres[1:])]
    bounds.append(max(duration, spans[-1][1]))
    segments: list[TimelineSegment] = []
    first = 0
    for i in range(1, len(spans) + 1):
        if i < len(spans) and top[i] == top[first]:
            continue
        label = top[first]
        score = float(probabilities[first:i, label].mean())
        segments.append(
            TimelineSegment(bounds[first], bounds[i], names[label], score, num_windows=i - first)
        )
        first = i
    return segments


def _ranked(row: torch.Tensor, names: Sequence[str], top_k: int | None) -> list[LabelScore]:
    k = len(names) if top_k is None else min(top_k, len(names))
    values, order = row.topk(k)
    return [LabelScore(names[c], float(s)) for s, c in zip(values.tolist(), order.tolist())]


# ----------------------------------------------------------------------------------------------
# The pass over a video
# ----------------------------------------------------------------------------------------------


def frame_transform(predictor: Any) -> Any:
    """The predictor's test transform for one frame: uint8 [H, W, 3] -> uint8 [3, S, S] (resize
    the short side, centre crop; one view)."""

    data = predictor.data
    transform = EvalTransform(data.input_size, resize_size=data.resize_size, num_crops=1)

    def one(rgb: Any) -> Any:
        return transform(rgb[None])[0, 0]  # [1, H, W, 3] -> [V=1, T=1, 3, S, S] -> [3, S, S]

    return one


def embed_windows(predictor: Any, clips: list[Any]) -> torch.Tensor:
    """Video embeddings ``[B, D]`` (float, CPU) of windows' frames (each T x uint8 [3, S, S])."""

    video = torch.stack([torch.stack(frames) for frames in clips])  # [B, T, 3, S, S]
    with torch.inference_mode(), autocast_context(predictor.device, predictor._autocast):
        out = predictor.model.encode_video(video.to(predictor.device))  # [B, D]
    return out.float().cpu().clone()


def embed_video_windows(
    predictor: Any,
    video: str,
    spans: Callable[[float | None], Iterable[tuple[float, float]]],
    *,
    fps: float | None = None,
) -> tuple[list[tuple[float, float]], torch.Tensor, float]:
    """Embed windows of a video in one front-to-back read (the timeline's pass).

    Args:
        predictor: the :class:`~text4vis.predict.Predictor` (model, data settings, batch size).
        video: a video file or frame folder.
        spans: given the duration the container states (None when unknown), the windows
            ``(start, end)`` in increasing start (:func:`~text4vis.data.streams.window_spans`
            for windows every stride; a list of one span for one part of the video).
        fps: frame rate of a frame folder.

    Returns:
        The windows read ``(start, end)`` (ends cut to the video's end), their video
        embeddings ``[N, D]`` (float, CPU, not normalised) and the video's duration in seconds.

    Raises:
        VideoDecodeError: the video cannot be read.
        UsageError: no window reaches a frame.
    """
    data = predictor.data
    with open_frame_stream(
        video,
        fps=fps,
        frame_template=data.frame_template,
        start_index=data.frame_start_index,
    ) as stream:
        ends: list[float] = []
        windows = iter_windows(
            stream,
            spans(stream.duration),
            data.num_segments,
            frame_transform(predictor),
            path=str(video),
            frame_duration=stream.frame_duration,
            end_out=ends,
        )
        kept_spans: list[tuple[float, float]] = []
        embeddings: list[torch.Tensor] = []
        batch: list[Any] = []
        # Windows are assembled in a thread while the previous batch runs through the model.
        for item in prefetch(windows, maxsize=predictor.batch_size):
            kept_spans.append((item.start, item.end))
            batch.append(item.frames)
            if len(batch) == predictor.batch_size:
                embeddings.append(embed_windows(predictor, batch))
                batch = []
        if batch:
            embeddings.append(embed_windows(predictor, batch))
    # The end of the video from its frames (a header's duration can be off).
    duration = round(ends[0], 6) if ends else (kept_spans[-1][1] if kept_spans else 0.0)
    kept_spans = [(start, min(end, duration)) for start, end in kept_spans]
    if not embeddings:
        raise UsageError(f"{video}: no window to label (duration {duration:.3f} s)")
    return kept_spans, torch.cat(embeddings), float(duration)


def build_timeline(
    predictor: Any,
    video: str,
    *,
    window: float,
    stride: float,
    labels: Sequence[str] | None = None,
    top_k: int | None = 5,
    smooth: int = 1,
    fps: float | None = None,
    templates: str | Sequence[str] | None = None,
) -> Timeline:
    """See :meth:`text4vis.predict.Predictor.timeline`."""
    check_window(window, stride)
    if smooth < 1:
        raise UsageError(f"smooth must be at least 1 window, got {smooth}")
    if top_k is not None and top_k < 1:
        raise UsageError(f"top_k must be at least 1 (or None for all labels), got {top_k}")
    names, weight = predictor.classifier_for(labels, templates)  # text side first: fails fast
    kept_spans, embedded, duration = embed_video_windows(
        predictor, video, lambda hint: window_spans(hint, window, stride), fps=fps
    )
    probabilities = predictor.scores(embedded[:, None, :], weight)  # [N, 1, D] -> [N, C]
    if smooth > 1:
        probabilities = smooth_probabilities(probabilities, smooth)
    result = Timeline(
        str(video),
        duration=float(duration),
        window=float(window),
        stride=float(stride),
        smooth=int(smooth),
        windows=[
            TimelineWindow(start, end, _ranked(row, names, top_k))
            for (start, end), row in zip(kept_spans, probabilities)
        ],
        segments=merge_segments(kept_spans, probabilities, names, float(duration)),
    )
    logger.info(
        "%s: %d windows, %d segments over %.1f s",
        video,
        len(result.windows),
        len(result.segments),
        duration,
    )
    return result
