"""Decoding of the sampled frames of a clip with PyAV.

MA-52 clips are H.264 with typically a single keyframe, so reaching frame k
means decoding every frame before it. We therefore (1) demux the video stream's
packets once, which is cheap and gives the frame count without trusting the
header, (2) decode only up to the last frame we need, and (3) convert (colour
and scale, in one swscale call) only the frames we keep.

Frames come out in display orientation: a clip whose display matrix says to
rotate it by a quarter, half or three-quarter turn (phones store portrait video
as landscape pictures plus such a matrix) has its kept frames turned by it. The
scale to ``short_side`` is the same before and after a quarter turn (the short
side stays the short side), so it is done on the stored picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import av
import numpy as np


class DecodeError(RuntimeError):
    """A clip that cannot be decoded into the frames asked for."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if not short_side:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns (0-3) for a display-matrix rotation in degrees.

    ``rotation`` is FFmpeg's counter-clockwise angle (PyAV's ``VideoFrame.rotation``):
    a phone's portrait clip stored as landscape reads -90, i.e. turn clockwise. Angles
    that are not a multiple of 90 degrees (within one degree) are not applied.
    """
    turns = round(rotation / 90)
    if abs(rotation - 90 * turns) > 1:
        return 0
    return turns % 4


def read_frames(
    path: str | Path,
    choose_indices: Callable[[int], np.ndarray],
    short_side: int | None = None,
    threads: int = 1,
    num_frames: int | None = None,
    on_partial: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Decode the frames ``choose_indices(num_frames)`` picks; returns uint8 [T, H, W, 3].

    ``num_frames`` is the clip's frame count when known (from a manifest); the
    file is then read only up to the last frame needed. Otherwise it is the
    number of video packets in the file. If the decoder then delivers fewer
    frames (a truncated or damaged stream, a stale manifest), indices are chosen
    again from the number it did deliver, so nothing beyond the real end is
    ever returned. Such a partly decodable clip is reported, not hidden:
    ``on_partial(packets, decoded)`` is called with the stream's packet count and
    the number of frames the decoder delivered (the returned frames then cover
    only those).
    """
    path = Path(path)
    try:
        if num_frames:
            with av.open(str(path), mode="r") as container:
                stream = _video_stream(container, path, threads)
                packets = (p for p in container.demux(stream) if p.size > 0)
                frames, _ = _decode(stream, packets, choose_indices(num_frames), short_side)
            if frames is not None:
                return frames
            # The count was wrong for this file: count the real frames below.
        with av.open(str(path), mode="r") as container:
            stream = _video_stream(container, path, threads)
            packets = [p for p in container.demux(stream) if p.size > 0]
            if not packets:
                raise DecodeError(path, "video stream has no packets")
            frames, decoded = _decode(stream, packets, choose_indices(len(packets)), short_side)
            if frames is None:
                # Fewer frames than packets: choose again within what exists.
                if decoded == 0:
                    raise DecodeError(path, "no frame could be decoded")
                frames, _ = _decode(stream, packets, choose_indices(decoded), short_side)
                if frames is None:
                    raise DecodeError(path, "decoder output changed between two passes")
                if on_partial is not None:
                    on_partial(len(packets), decoded)
            return frames
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        raise DecodeError(path, f"{type(err).__name__}: {err}") from err


def _video_stream(container, path: Path, threads: int):
    if not container.streams.video:
        raise DecodeError(path, "no video stream")
    stream = container.streams.video[0]
    # One thread per DataLoader worker by default: workers already fill the cores.
    stream.thread_type = "AUTO" if threads > 1 else "SLICE"
    stream.codec_context.thread_count = threads
    return stream


def _decode(stream, packets, indices: np.ndarray, short_side: int | None):
    """Decode in order until ``max(indices)``; None plus the count if the stream ends first."""
    indices = np.asarray(indices, dtype=np.int64)
    last = int(indices.max())
    slots: dict[int, list[int]] = {}
    for slot, i in enumerate(indices.tolist()):
        slots.setdefault(i, []).append(slot)
    result: np.ndarray | None = None
    codec = stream.codec_context
    codec.flush_buffers()
    n = 0

    def take(frame) -> None:
        nonlocal n, result
        if n in slots:
            w, h = _scaled_size(frame.width, frame.height, short_side)
            # One swscale call for colour and size; at the cache size there is nothing to scale,
            # and not asking for a size keeps swscale on its unscaled fast path.
            if (w, h) == (frame.width, frame.height):
                rgb = frame.reformat(format="rgb24")
            else:
                rgb = frame.reformat(width=w, height=h, format="rgb24")
            # The display matrix travels with every decoded frame (FFmpeg copies the stream's).
            turns = quarter_turns(frame.rotation)
            if result is None:
                shape = (w, h) if turns % 2 else (h, w)
                result = np.empty((len(indices), *shape, 3), np.uint8)
            # Copy straight from swscale's buffer into the output: one copy per frame, not two
            # (a turn is a strided view of that buffer, so it costs no extra copy either).
            plane = rgb.planes[0]
            view = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, : 3 * w].reshape(h, w, 3)
            if turns:
                view = np.rot90(view, turns)
            for slot in slots[n]:
                result[slot] = view
        n += 1

    for packet in packets:
        try:
            out = codec.decode(packet)
        except av.InvalidDataError:
            # A damaged packet: the frames decoded so far remain valid.
            continue
        for frame in out:
            take(frame)
            if n > last:
                return result, n
    try:
        for frame in codec.decode(None):
            take(frame)
            if n > last:
                return result, n
    except av.FFmpegError:
        pass
    return None, n
