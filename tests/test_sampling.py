"""TSN segment sampling."""

from __future__ import annotations

import numpy as np
import pytest

from microaction.data.sampling import segment_indices


def _centres(n, t):
    return [int((i + 0.5) * n / t) for i in range(t)]


def _segment_bounds(n, t, i):
    """Smallest and largest frame index a point of segment i = [i n/T, (i+1) n/T) can floor to."""
    return (i * n) // t, ((i + 1) * n - 1) // t


@pytest.mark.parametrize("n,t", [(48, 8), (45, 8), (75, 8), (12, 7), (10, 3), (100, 16), (7, 7), (64, 13), (31, 5)])
def test_eval_is_segment_centre(n, t):
    idx = segment_indices(n, t, train=False)
    assert idx.tolist() == _centres(n, t)


def test_eval_is_segment_centre_exhaustive():
    for n in range(1, 130):
        for t in range(1, 20):
            got = segment_indices(n, t, train=False).tolist()
            assert got == _centres(n, t), (n, t)


def test_eval_known_values():
    assert segment_indices(48, 8, False).tolist() == [3, 9, 15, 21, 27, 33, 39, 45]
    assert segment_indices(12, 7, False).tolist() == [0, 2, 4, 6, 7, 9, 11]


def test_eval_is_deterministic_and_ignores_rng():
    a = segment_indices(50, 8, False, np.random.default_rng(1))
    b = segment_indices(50, 8, False, np.random.default_rng(2))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("n,t", [(48, 8), (45, 8), (9, 8), (5, 8), (100, 3), (13, 13), (3, 10), (1, 4), (2, 29)])
def test_train_indices_inside_their_segments(n, t):
    for seed in range(200):
        idx = segment_indices(n, t, train=True, rng=np.random.default_rng(seed))
        assert idx.shape == (t,)
        assert idx.dtype.kind == "i"
        assert np.all(np.diff(idx) >= 0), idx
        assert idx.min() >= 0 and idx.max() < n
        for i, k in enumerate(idx.tolist()):
            lo, hi = _segment_bounds(n, t, i)
            assert lo <= k <= hi, (seed, i, k, lo, hi)


def test_train_is_random_but_reproducible():
    a = segment_indices(60, 8, True, np.random.default_rng(7))
    b = segment_indices(60, 8, True, np.random.default_rng(7))
    assert np.array_equal(a, b)
    draws = {tuple(segment_indices(60, 8, True, np.random.default_rng(s)).tolist()) for s in range(30)}
    assert len(draws) > 20
    # Each segment is 7.5 frames wide: over many draws every segment shows several positions.
    stack = np.array(sorted(draws))
    assert all(len(set(stack[:, i])) >= 3 for i in range(8))


def test_train_without_rng_uses_fresh_randomness():
    draws = {tuple(segment_indices(200, 4, True).tolist()) for _ in range(20)}
    assert len(draws) > 1


@pytest.mark.parametrize("train", [False, True])
def test_clip_shorter_than_t_repeats_frames(train):
    idx = segment_indices(5, 8, train, np.random.default_rng(0))
    assert idx.shape == (8,)
    assert idx.min() >= 0 and idx.max() <= 4
    assert np.all(np.diff(idx) >= 0)
    assert len(set(idx.tolist())) < 8
    if not train:
        assert idx.tolist() == [0, 0, 1, 2, 2, 3, 4, 4] == _centres(5, 8)


@pytest.mark.parametrize("train", [False, True])
def test_single_frame_clip(train):
    assert segment_indices(1, 8, train, np.random.default_rng(0)).tolist() == [0] * 8
    assert segment_indices(1, 1, train, np.random.default_rng(0)).tolist() == [0]


def test_one_segment_eval_is_clip_centre():
    assert segment_indices(10, 1, False).tolist() == [5]
    assert segment_indices(11, 1, False).tolist() == [5]


@pytest.mark.parametrize("n,t", [(0, 8), (-3, 8), (10, 0), (10, -1)])
def test_invalid_sizes_raise(n, t):
    with pytest.raises(ValueError):
        segment_indices(n, t, train=False)
    with pytest.raises(ValueError):
        segment_indices(n, t, train=True, rng=np.random.default_rng(0))
