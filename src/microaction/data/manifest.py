"""Per-clip facts (frame count, fps, duration, size) written by ``prepare_ma52``.

With a manifest the loader knows each clip's frame count without demuxing the
whole file first, so decoding can stop at the last frame it needs. A manifest
row is trusted only while the file still has the byte size it records.
"""

from __future__ import annotations

import csv
import os
from dataclasses import astuple, dataclass, fields
from fractions import Fraction
from pathlib import Path

import av

from .decode import quarter_turns

MANIFEST_NAME = "manifest.csv"


class ManifestError(ValueError):
    """A manifest that cannot be read or does not match the dataset."""


@dataclass(frozen=True)
class ClipInfo:
    split: str
    name: str
    frames: int
    fps: float
    duration: float
    width: int
    height: int
    bytes: int


FIELDS = tuple(f.name for f in fields(ClipInfo))


def _first_frame_rotation(container, stream) -> float:
    """The display rotation (degrees) the decoder attaches to the first frame; 0 if none decodes."""
    container.seek(0, stream=stream)
    try:
        for frame in container.decode(stream):
            return frame.rotation
    except av.FFmpegError:
        pass
    return 0.0


def probe_clip(path: str | Path, split: str = "", name: str | None = None) -> ClipInfo:
    """Facts of a clip from its demuxed video packets (headers may lack or misstate them)."""
    path = Path(path)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ManifestError(f"{path}: no video stream")
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.size > 0]
        width, height = stream.codec_context.width, stream.codec_context.height
        # the size as displayed: a quarter-turn display matrix swaps the stored sides
        if pts and quarter_turns(_first_frame_rotation(container, stream)) % 2:
            width, height = height, width
        rate = stream.average_rate
        tb = stream.time_base
    frames = len(pts)
    fps = float(rate) if rate else 0.0
    known = sorted(p for p in pts if p is not None)
    if tb and len(known) > 1:
        # Span of the timestamps plus one mean frame step, i.e. the clip's length.
        span = Fraction(known[-1] - known[0]) * tb
        duration = float(span * len(known) / (len(known) - 1))
        fps = fps or (len(known) / duration if duration > 0 else 0.0)
    else:
        duration = frames / fps if fps else 0.0
    return ClipInfo(split, name or path.name, frames, round(fps, 4), round(duration, 4), width, height,
                    path.stat().st_size)


def write_manifest(path: str | Path, infos) -> Path:
    """Write atomically (temporary name, then rename): a reader never sees half a manifest."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(FIELDS)
            for info in sorted(infos, key=lambda i: (i.split, i.name)):
                w.writerow(astuple(info))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_manifest(path: str | Path) -> dict[tuple[str, str], ClipInfo]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    out: dict[tuple[str, str], ClipInfo] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != FIELDS:
            raise ManifestError(f"{path}:1: expected header {','.join(FIELDS)}, got {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                split, name, frames, fps, duration, width, height, size = row
                info = ClipInfo(split, name, int(frames), float(fps), float(duration), int(width), int(height),
                                int(size))
            except ValueError:
                raise ManifestError(f"{path}:{lineno}: malformed row {row}") from None
            if info.frames < 1:
                raise ManifestError(f"{path}:{lineno}: {name} has frame count {info.frames}")
            out[(split, name)] = info
    return out


def resolve_manifest(root: str | Path, setting: str | os.PathLike | bool | None) -> Path | None:
    """``"auto"``/True: ``<root>/manifest.csv`` if present; None/False/"none": never; else that file."""
    if setting is None or setting is False or (isinstance(setting, str) and setting.lower() in ("none", "off", "")):
        return None
    if setting is True or (isinstance(setting, str) and setting.lower() == "auto"):
        candidate = Path(root) / MANIFEST_NAME
        return candidate if candidate.is_file() else None
    path = Path(setting).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.manifest={setting}: no such file (use 'auto' or null)")
    return path
