"""TSN segment sampling: one frame from each of T equal segments of the clip."""

from __future__ import annotations

import numpy as np


def segment_indices(
    num_frames: int,
    num_segments: int,
    train: bool,
    rng: np.random.Generator | None = None,
    offset: float = 0.5,
) -> np.ndarray:
    """Frame indices (sorted, length ``num_segments``) for a clip of ``num_frames``.

    Training draws a random frame inside each segment, evaluation takes each
    segment's centre (``offset``: another fixed position inside each segment, as a
    fraction of it; the temporal views of ``view_indices``). A clip shorter than T
    gives segments narrower than a frame, so frames repeat rather than the clip
    being dropped.
    """
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    # Position inside each segment as a fraction of it (0.5 = centre), then
    # floor((i + frac) * n / T): scaling once avoids the rounding error of
    # i * (n / T) + frac * (n / T), which for T not a power of two lands an exact
    # centre like 6.0 (n=12, T=7, i=3) on 5.999... and so one frame early.
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        frac = rng.random(num_segments)
    else:
        if not 0 <= offset < 1:
            raise ValueError(f"offset must be in [0, 1), got {offset}")
        frac = np.full(num_segments, float(offset))
    idx = np.floor((np.arange(num_segments) + frac) * num_frames / num_segments).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)


def view_indices(num_frames: int, num_segments: int, clips: int) -> np.ndarray:
    """The frames of ``clips`` evaluation clips, one after the other (length ``clips * num_segments``): clip k
    takes the frame at ``(k + 0.5) / clips`` of each segment, so the clips are the standard multi-clip test's
    evenly shifted samplings; one clip is ``segment_indices``' centre frames."""
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    return np.concatenate([segment_indices(num_frames, num_segments, False, offset=(k + 0.5) / clips)
                           for k in range(clips)])


def window_indices(num_frames: int, num_segments: int, rng: np.random.Generator, min_span: float) -> np.ndarray:
    """Training frames from a random stretch of the clip: a window of ``u * num_frames`` frames (u uniform in
    [``min_span``, 1]) at a random start, then one random frame per segment of the window. ``min_span`` 1 is
    ``segment_indices(num_frames, num_segments, True, rng)`` over the whole clip."""
    if not 0 < min_span <= 1:
        raise ValueError(f"min_span must be in (0, 1], got {min_span}")
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    span = max(1, min(num_frames, int(round(num_frames * rng.uniform(min_span, 1.0)))))
    start = int(rng.integers(0, num_frames - span + 1))
    return start + segment_indices(span, num_segments, True, rng)
