"""Videos with predictions written on their frames (predict.py's ``predict.overlay=true``).

``write_overlay`` decodes a video once from its start, draws the text lines a callback gives for each
frame on a dark band at the top of the frame (Pillow, which matplotlib already depends on), and
encodes the frames as H.264 MP4 as they come: one frame is held at a time, so a video of any length
costs the same memory. The file is written under a temporary name and renamed when complete.

``cell_probabilities`` gives what a recognition overlay shows at a frame: the class probabilities
averaged over the windows covering it (the cells of ``timeline.merge_segments``).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .data.video import _add_h264_stream, _encode, iter_frames

# keyframes every this many seconds: the overlay is watched and scrubbed, not decoded once like a clip
GOP_S = 2.0


@functools.cache
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def draw_lines(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``frame`` (uint8 [H, W, 3]) with ``lines`` written in white on a dark band across its top; the text
    height follows the frame's height (1/26 of it, at least 9 pixels). Returns a new array."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame))
    if not lines:
        return np.asarray(image)
    height = frame.shape[0]
    size = max(9, height // 26)
    font = _font(size)
    pad = max(2, size // 4)
    step = size + pad
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, frame.shape[1], pad + step * len(lines)), fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((pad, pad + step * i), line, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def cell_probabilities(firsts: Sequence[int], ends: Sequence[int], probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bounds, cell probabilities): the frame numbers every window starts or ends at, ascending, and for
    each stretch between two of them the mean of ``probs`` [W, C] over the windows covering it (zeros
    where none does). Window w covers frames ``firsts[w]`` .. ``ends[w] - 1``."""
    probs = np.asarray(probs, dtype=np.float64)
    bounds = np.array(sorted({*map(int, firsts), *map(int, ends)}), dtype=np.int64)
    at = {int(b): i for i, b in enumerate(bounds)}
    delta = np.zeros((len(bounds), probs.shape[1]))
    count = np.zeros(len(bounds))
    for first, end, p in zip(firsts, ends, probs):
        delta[at[int(first)]] += p
        delta[at[int(end)]] -= p
        count[at[int(first)]] += 1
        count[at[int(end)]] -= 1
    sums = np.cumsum(delta, axis=0)[:-1]
    counts = np.cumsum(count)[:-1]
    cells = np.where(counts[:, None] > 0.5, sums / np.maximum(counts, 1)[:, None], 0.0)
    return bounds, cells


def _even(frame: np.ndarray) -> np.ndarray:
    """The frame less its last row / column where the size is odd (H.264 yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def overlay_short_side(width: int, height: int, short_side: int | None) -> int | None:
    """The short side to decode an overlay at: ``short_side``, unless the video is no larger (never enlarged)."""
    if not short_side or min(width, height) <= short_side:
        return None
    return int(short_side)


def write_overlay(
    src: str | Path,
    dst: str | Path,
    lines_at: Callable[[int], Sequence[str]],
    num_frames: int,
    fps: float,
    short_side: int | None = None,
    threads: int = 1,
    crf: int = 23,
) -> Path:
    """Write ``dst`` (H.264 MP4, no audio): frames 0 .. ``num_frames - 1`` of ``src`` in display orientation,
    scaled so the short side is ``short_side`` (None: as stored), each with ``lines_at(k)`` drawn on it
    (``draw_lines``), at ``fps`` frames per second.

    Frames are decoded (``video.iter_frames``), drawn and encoded one at a time. The file appears under
    ``dst`` only when complete; a ``DecodeError`` from the decoder (naming ``src``) leaves nothing.
    """
    src, dst = Path(src), Path(dst)
    rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(30)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part-{os.getpid()}")
    frames = iter_frames(src, range(num_frames), short_side, threads)
    try:
        with contextlib.closing(frames):
            first = next(frames, None)
            if first is None:
                raise ValueError(f"{src}: no frame to write")

            def video_frames() -> Iterator[av.VideoFrame]:
                for k, frame in _chain(first, frames):
                    out = av.VideoFrame.from_ndarray(np.ascontiguousarray(_even(draw_lines(frame, lines_at(k)))),
                                                     format="rgb24")
                    out.pts = k
                    yield out

            h, w = _even(first[1]).shape[:2]
            with av.open(str(tmp), mode="w", format="mp4") as out:
                gop = max(1, round(GOP_S * float(rate)))
                stream = _add_h264_stream(out, rate, w, h, 1 / rate, gop=gop, crf=crf, preset="veryfast",
                                          threads=threads)
                _encode(out, stream, video_frames())
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return dst


def _chain(first, rest):
    yield first
    yield from rest

