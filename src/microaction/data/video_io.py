"""Writing MP4 clips with PyAV (used by the dataset generators, tests and benchmarks)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_clip(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 30,
    *,
    audio: bool = False,
    audio_first: bool = False,
    gop: int | None = None,
    crf: int = 23,
    frame_times: list[float] | None = None,
    rotation: int = 0,
    preset: str = "veryfast",
) -> Path:
    """Write uint8 frames [T, H, W, 3] as H.264 (yuv420p) MP4.

    ``gop=None`` gives one keyframe per clip, as in the MA-52 release.
    ``audio`` adds a silent AAC track, ``audio_first`` makes it stream 0.
    ``frame_times`` (seconds, increasing) writes a variable-frame-rate clip.
    ``rotation`` (degrees counter-clockwise, a multiple of 90) is written as the
    stream's display matrix, as phones do: ``frames`` are the stored pictures and a
    player shows them turned by it (-90, a quarter turn clockwise, is a phone's
    portrait clip stored as landscape). ``preset`` is x264's speed/size trade-off.
    The file is written to a temporary name and renamed, so a crash never
    leaves a half-written clip under the final name.
    """
    path = Path(path)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even sizes, got {w}x{h}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            astream = None
            if audio and audio_first:
                astream = _add_audio(out)
            vstream = out.add_stream("libx264", rate=fps)
            vstream.width, vstream.height = w, h
            vstream.pix_fmt = "yuv420p"
            if rotation % 360:
                if not hasattr(vstream, "set_display_rotation"):
                    raise RuntimeError(f"writing a rotated clip needs a PyAV with VideoStream.set_display_rotation "
                                       f"(PyAV {av.__version__} has none)")
                vstream.set_display_rotation(rotation)
            vstream.codec_context.time_base = Fraction(1, 90000) if frame_times else Fraction(1, fps)
            vstream.options = {
                "crf": str(crf),
                "preset": preset,
                "g": str(gop if gop else max(t, 1) + 1),
                "keyint_min": str(gop if gop else max(t, 1) + 1),
                "sc_threshold": "0",
                "bf": "0",
            }
            if audio and not audio_first:
                astream = _add_audio(out)
            for i, arr in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                if frame_times:
                    frame.pts = int(round(frame_times[i] * 90000))
                    frame.time_base = Fraction(1, 90000)
                else:
                    frame.pts = i
                for packet in vstream.encode(frame):
                    out.mux(packet)
            for packet in vstream.encode():
                out.mux(packet)
            if astream is not None:
                _write_silence(out, astream, t / fps)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _add_audio(out):
    stream = out.add_stream("aac", rate=16000)
    stream.layout = "mono"
    return stream


def _write_silence(out, stream, seconds: float) -> None:
    rate = 16000
    samples = max(1024, int(seconds * rate))
    pts = 0
    while pts < samples:
        n = min(1024, samples - pts)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, n), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = pts
        pts += n
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
