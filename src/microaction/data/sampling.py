"""TSN segment sampling: one frame from each of T equal segments of the clip."""

from __future__ import annotations

import numpy as np


def segment_indices(
    num_frames: int,
    num_segments: int,
    train: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices (sorted, length ``num_segments``) for a clip of ``num_frames``.

    Training draws a random frame inside each segment, evaluation takes each
    segment's centre. A clip shorter than T gives segments narrower than a frame,
    so frames repeat rather than the clip being dropped.
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
        frac = np.full(num_segments, 0.5)
    idx = np.floor((np.arange(num_segments) + frac) * num_frames / num_segments).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)
