"""Frame samplers: length, bounds, order, determinism, coverage, short videos."""

from __future__ import annotations

import numpy as np
import pytest

from text4vis.data.sampling import (
    build_sampler,
    dense_test_indices,
    dense_train_indices,
    segment_test_indices,
    segment_train_indices,
    segment_val_indices,
)

LENGTHS = [1, 3, 7, 8, 9, 31, 300]


@pytest.mark.parametrize("n", LENGTHS)
def test_segment_train_one_frame_per_segment(n):
    T = 8
    for seed in range(20):
        idx = segment_train_indices(n, T, np.random.default_rng(seed))
        assert idx.shape == (T,) and idx.dtype == np.int64
        assert idx.min() >= 0 and idx.max() < n
        assert np.all(np.diff(idx) >= 0)
        if n >= T:
            # frame t lies in segment t: [floor(t n / T), floor((t+1) n / T))
            t = np.arange(T)
            assert np.all(idx >= t * n // T) and np.all(idx < (t + 1) * n // T)
        else:
            assert set(idx.tolist()) == set(range(n))  # every frame of a short video is used


def test_segment_train_is_seeded_and_random():
    a = segment_train_indices(300, 8, np.random.default_rng(1))
    b = segment_train_indices(300, 8, np.random.default_rng(1))
    draws = {tuple(segment_train_indices(300, 8, np.random.default_rng(s))) for s in range(10)}
    assert np.array_equal(a, b)
    assert len(draws) > 5


@pytest.mark.parametrize("n", LENGTHS)
def test_segment_val_centres(n):
    idx = segment_val_indices(n, 8)
    assert idx.shape == (8,) and np.all(np.diff(idx) >= 0) and idx.max() < n
    if n == 300:
        assert idx.tolist() == [int((t + 0.5) * 300 / 8) for t in range(8)]


def test_multi_clip_coverage_and_shift():
    n, T = 96, 8
    clips = segment_test_indices(n, T, num_clips=4)
    assert clips.shape == (4, T)
    assert np.array_equal(segment_test_indices(n, T, 1)[0], segment_val_indices(n, T))
    for row in clips:
        assert np.all(np.diff(row) > 0)
    # Each segment of 12 frames is hit at 4 distinct, evenly spaced offsets.
    offsets = clips - (np.arange(T) * n // T)[None]
    assert np.all(offsets.min(0) >= 0) and np.all(offsets.max(0) < n // T)
    assert all(len(set(col)) == 4 for col in offsets.T)
    assert offsets[:, 0].tolist() == [1, 4, 7, 10]


def test_dense_sampling():
    idx = dense_train_indices(100, 8, np.random.default_rng(0), stride=4)
    assert np.all(np.diff(idx) == 4) and idx.max() < 100
    starts = {int(dense_train_indices(100, 8, np.random.default_rng(s), 4)[0]) for s in range(30)}
    assert len(starts) > 5 and max(starts) <= 100 - 29
    test = dense_test_indices(100, 8, num_clips=3, stride=4)
    assert test.shape == (3, 8) and np.all(np.diff(test, axis=1) == 4)
    assert len({int(r[0]) for r in test}) == 3 and test.max() < 100
    short = dense_train_indices(10, 8, np.random.default_rng(0), stride=4)
    assert short.max() < 10 and np.all(np.diff(short) >= 0)


def test_build_sampler_shapes_and_unknown_name():
    rng = np.random.default_rng(0)
    assert build_sampler("segment", 8, train=True)(50, rng).shape == (1, 8)
    assert build_sampler("segment", 8, train=False, num_clips=3)(50, rng).shape == (3, 8)
    assert build_sampler("dense", 4, train=False, num_clips=2)(50, rng).shape == (2, 4)
    with pytest.raises(ValueError, match="segment"):
        build_sampler("random", 8, train=True)
