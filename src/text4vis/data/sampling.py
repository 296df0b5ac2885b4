"""Frame-index samplers: pure functions of (num_frames, T, rng) returning 0-based frame indices.

Segment (TSN) sampling splits a video of ``n`` frames into ``T`` equal segments
``[floor(i n / T), floor((i+1) n / T))``:

- :func:`segment_train_indices`: a random frame inside each segment (sorted);
- :func:`segment_val_indices`: the centre of each segment (deterministic, sorted);
- :func:`segment_test_indices`: ``num_clips`` evenly shifted sets, clip c taking the point at
  fraction ``(c + 0.5) / num_clips`` of every segment, so the clips together cover the video
  evenly.

Dense sampling takes ``T`` frames ``stride`` apart from one window: a random start in training
(:func:`dense_train_indices`) and ``num_clips`` starts spread evenly over the video at test time
(:func:`dense_test_indices`).

Videos shorter than ``T`` repeat frames (as the paper's code does): training takes every frame
once plus random extra frames and sorts them; evaluation spreads ``T`` points evenly, which
repeats frames. Dense windows longer than the video fall back to that even spread (documented
behaviour, not a silent error: the clip still shows the whole short video in order).

All functions return int64 arrays: [T] for one clip, [num_clips, T] for test samplers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from text4vis.errors import ConfigError

__all__ = [
    "SAMPLINGS",
    "ClipSampler",
    "build_sampler",
    "dense_test_indices",
    "dense_train_indices",
    "segment_test_indices",
    "segment_train_indices",
    "segment_val_indices",
]

SAMPLINGS = ("segment", "dense")


def _check(num_frames: int, num_segments: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least 1 frame, got num_frames={num_frames}")
    if num_segments < 1:
        raise ConfigError(f"num_segments must be at least 1, got {num_segments}")


def _spread(num_frames: int, num_segments: int, shift: float = 0.5) -> np.ndarray:
    """Point at fraction ``shift`` of each of T equal segments (repeats frames when n < T)."""
    positions = (np.arange(num_segments, dtype=np.float64) + shift) * num_frames / num_segments
    return np.minimum(np.floor(positions).astype(np.int64), num_frames - 1)


def segment_train_indices(
    num_frames: int, num_segments: int, rng: np.random.Generator
) -> np.ndarray:
    """TSN training sampling: one random frame in each of ``num_segments`` equal segments.

    Args:
        num_frames: frames in the video (n).
        num_segments: frames to sample (T).
        rng: the source of randomness.

    Returns:
        int64 [T], sorted, in ``[0, n)``.
    """
    _check(num_frames, num_segments)
    if num_frames < num_segments:
        # Every frame once, then random repeats, in temporal order.
        extra = rng.integers(0, num_frames, size=num_segments - num_frames)
        return np.sort(np.concatenate([np.arange(num_frames), extra])).astype(np.int64)
    ticks = (np.arange(num_segments + 1) * num_frames) // num_segments
    lengths = ticks[1:] - ticks[:-1]  # every segment has at least one frame here
    return (ticks[:-1] + rng.integers(0, lengths)).astype(np.int64)


def segment_val_indices(num_frames: int, num_segments: int) -> np.ndarray:
    """Validation sampling: the centre frame of each segment. int64 [T], sorted."""
    _check(num_frames, num_segments)
    return _spread(num_frames, num_segments, 0.5)


def segment_test_indices(num_frames: int, num_segments: int, num_clips: int = 1) -> np.ndarray:
    """Multi-clip testing: ``num_clips`` sets of T frames, evenly shifted inside the segments.

    Returns:
        int64 [num_clips, T]; each row sorted; with one clip it equals the validation sampling.
    """
    _check(num_frames, num_segments)
    if num_clips < 1:
        raise ConfigError(f"num_clips must be at least 1, got {num_clips}")
    rows = [_spread(num_frames, num_segments, (c + 0.5) / num_clips) for c in range(num_clips)]
    return np.stack(rows)


def _dense_window(num_frames: int, num_segments: int, stride: int) -> int:
    if stride < 1:
        raise ConfigError(f"dense_stride must be at least 1, got {stride}")
    return (num_segments - 1) * stride + 1


def dense_train_indices(
    num_frames: int, num_segments: int, rng: np.random.Generator, stride: int = 2
) -> np.ndarray:
    """Dense training sampling: T frames ``stride`` apart from a random start. int64 [T], sorted."""
    _check(num_frames, num_segments)
    window = _dense_window(num_frames, num_segments, stride)
    if num_frames < window:
        return _spread(num_frames, num_segments, 0.0)
    start = int(rng.integers(0, num_frames - window + 1))
    return start + stride * np.arange(num_segments, dtype=np.int64)


def dense_test_indices(
    num_frames: int, num_segments: int, num_clips: int = 1, stride: int = 2
) -> np.ndarray:
    """Dense testing: ``num_clips`` windows with starts spread evenly. int64 [num_clips, T]."""
    _check(num_frames, num_segments)
    if num_clips < 1:
        raise ConfigError(f"num_clips must be at least 1, got {num_clips}")
    window = _dense_window(num_frames, num_segments, stride)
    if num_frames < window:
        return np.stack([_spread(num_frames, num_segments, 0.0)] * num_clips)
    slack = num_frames - window
    starts = [int(round((c + 0.5) * slack / num_clips)) for c in range(num_clips)]
    return np.stack([s + stride * np.arange(num_segments, dtype=np.int64) for s in starts])


@dataclass(frozen=True)
class ClipSampler:
    """A picklable ``(num_frames, rng) -> int64 [num_clips, T]`` sampler for a dataset.

    Training samplers return one clip ([1, T]); evaluation samplers ignore ``rng``.
    """

    sampling: str  # "segment" or "dense"
    num_segments: int  # T
    train: bool  # random training sampling, else deterministic evaluation sampling
    num_clips: int = 1  # evaluation clips
    dense_stride: int = 2  # frame stride of dense sampling

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ConfigError(
                f"unknown data.sampling {self.sampling!r}; choose one of {list(SAMPLINGS)}"
            )

    def __call__(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        T = self.num_segments
        if self.sampling == "segment":
            if self.train:
                return segment_train_indices(num_frames, T, rng)[None]
            return segment_test_indices(num_frames, T, self.num_clips)
        if self.train:
            return dense_train_indices(num_frames, T, rng, self.dense_stride)[None]
        return dense_test_indices(num_frames, T, self.num_clips, self.dense_stride)


def build_sampler(
    sampling: str,
    num_segments: int,
    *,
    train: bool,
    num_clips: int = 1,
    dense_stride: int = 2,
) -> ClipSampler:
    """The sampler of a dataset split (see :class:`ClipSampler`).

    Raises:
        ValueError: an unknown sampling name.
    """
    return ClipSampler(sampling, num_segments, train, 1 if train else num_clips, dense_stride)
