"""Shared helpers for the data tests: tiny real H.264 clips whose frames carry a
per-frame brightness marker, so a test can tell exactly which frame it got back."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

MARKER_BASE = 20


def _marker_step(num_frames: int) -> int:
    # 7 grey levels per frame while that fits in 8 bits, 5 for longer clips (<= 46 frames).
    if MARKER_BASE + 7 * (num_frames - 1) <= 245:
        return 7
    if MARKER_BASE + 5 * (num_frames - 1) <= 245:
        return 5
    raise ValueError(f"too many frames for a brightness marker: {num_frames}")


def _marker_frames(num_frames: int, height: int = 32, width: int = 48, noise: int = 0, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3]; frame i is flat grey ``20 + step * i`` (plus optional zero-mean noise)."""
    step = _marker_step(num_frames)
    values = MARKER_BASE + step * np.arange(num_frames, dtype=np.int16)
    frames = np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).astype(np.int16)
    if noise:
        rng = np.random.default_rng(seed)
        frames = frames + rng.integers(-noise, noise + 1, size=frames.shape, dtype=np.int16)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _read_markers(frames, num_frames: int, tol: float = 3.0) -> list[int]:
    """Frame ids from decoded frames ([T, H, W, 3] or [T, 3, H, W], array or tensor).

    Fails if a frame's mean brightness is not within ``tol`` of a marker level,
    i.e. if it is not one of the frames that were written.
    """
    arr = np.asarray(frames, dtype=np.float64)
    means = arr.reshape(arr.shape[0], -1).mean(axis=1)
    step = _marker_step(num_frames)
    ids = np.rint((means - MARKER_BASE) / step).astype(int)
    for m, k in zip(means, ids):
        assert 0 <= k < num_frames, f"mean brightness {m:.1f} is no frame of a {num_frames}-frame clip"
        assert abs(m - (MARKER_BASE + step * k)) <= tol, f"mean brightness {m:.1f} is not a marker level"
    return ids.tolist()


@pytest.fixture
def markers():
    """``markers.frames(n, h, w)`` makes marked frames, ``markers.read(frames, n)`` reads their ids."""
    return SimpleNamespace(frames=_marker_frames, read=_read_markers, step=_marker_step, base=MARKER_BASE)


@pytest.fixture
def marker_clip(tmp_path, markers):
    """Factory: write a marked clip with ``write_clip`` and return its path."""
    from microaction.data.video import write_clip

    def make(name: str = "clip.mp4", num_frames: int = 12, height: int = 32, width: int = 48, crf: int = 12, **kw):
        frames = markers.frames(num_frames, height, width)
        return write_clip(tmp_path / name, frames, crf=crf, **kw)

    return make


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A complete 52-class dataset in the official layout, one clip per class and split."""
    from microaction.data.synthetic.quickstart import write_quickstart

    return write_quickstart(tmp_path_factory.mktemp("data") / "tiny", per_class=(1, 1, 1), seed=1, audio=False)


@pytest.fixture(scope="session")
def checkout(tmp_path_factory):
    """A fresh copy of the repository (as a clone has it), shared by the tests that run documented commands
    from its root; each writes its own timestamped run folder under its logs/."""
    from helpers import copy_checkout

    return copy_checkout(tmp_path_factory.mktemp("checkout"))
