"""The manifest file: per-clip facts (frame count, fps, duration, size) written by ``prepare_ma52``.

With a manifest the loader knows each clip's frame count without demuxing the
whole file first, so decoding can stop at the last frame it needs. A manifest
row is trusted only while the file still has the byte size it records. The facts
themselves come from ``video.probe``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from .video import probe
from ..utils.atomic import atomic_open

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


def probe_clip(path: str | Path, split: str = "", name: str | None = None) -> ClipInfo:
    """The manifest row of one clip file: its ``video.probe`` facts under ``split`` and ``name``
    (default: the file name), fps and duration rounded as the manifest stores them."""
    path = Path(path)
    facts = probe(path)
    return ClipInfo(split, name or path.name, facts.frames, round(facts.fps, 4), round(facts.duration, 4),
                    facts.width, facts.height, facts.bytes)


def write_manifest(path: str | Path, infos) -> Path:
    """Write atomically (temporary name, then rename): a reader never sees half a manifest."""
    path = Path(path)
    with atomic_open(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        for info in sorted(infos, key=lambda i: (i.split, i.name)):
            w.writerow(astuple(info))
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
