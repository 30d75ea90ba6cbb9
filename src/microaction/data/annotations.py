"""Parsing of the official MA-52 list files and ``label_name.txt``.

A list line is ``<video file name> <fine id>``; blank lines are ignored and the
last line may lack a newline. Every problem is reported with file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..classes import NUM_FINE

SPLITS = ("train", "val", "test")

LAYOUT_HELP = """expected the official MA-52 layout:
  <root>/train_list_videos.txt  val_list_videos.txt  test_list_videos.txt
  <root>/label_name.txt         (optional: "<fine id>\\t<name>" per line)
  <root>/videos_train/  videos_val/  videos_test/   (the .mp4 files the lists name)"""


class AnnotationError(ValueError):
    """A list or label file that does not follow the official format."""


@dataclass(frozen=True)
class ClipRecord:
    name: str
    label: int
    line: int


def list_path(root: Path, split: str) -> Path:
    return Path(root) / f"{split}_list_videos.txt"


def video_dir(root: Path, split: str) -> Path:
    return Path(root) / f"videos_{split}"


def read_list(path: str | Path, num_classes: int = NUM_FINE) -> list[ClipRecord]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}\n{LAYOUT_HELP}")
    records: list[ClipRecord] = []
    seen: dict[str, int] = {}
    with path.open("r", encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2:
                raise AnnotationError(
                    f"{path}:{lineno}: expected '<video file> <fine id>', got {line!r}"
                )
            name, label_text = fields
            try:
                label = int(label_text)
            except ValueError:
                raise AnnotationError(
                    f"{path}:{lineno}: label {label_text!r} is not an integer"
                ) from None
            if not 0 <= label < num_classes:
                raise AnnotationError(
                    f"{path}:{lineno}: label {label} outside 0..{num_classes - 1}"
                )
            if name in seen:
                raise AnnotationError(
                    f"{path}:{lineno}: {name} already listed on line {seen[name]}"
                )
            seen[name] = lineno
            records.append(ClipRecord(name, label, lineno))
    if not records:
        raise AnnotationError(f"{path}: list file has no entries")
    return records


def read_label_names(path: str | Path, num_classes: int = NUM_FINE) -> list[str]:
    """Read ``label_name.txt`` (``<id><tab><name>``); every id 0..num_classes-1 once."""
    path = Path(path)
    names: dict[int, str] = {}
    with path.open("r", encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            parts = line.split(None, 1)
            if len(parts) != 2 or not parts[0].isdigit():
                raise AnnotationError(f"{path}:{lineno}: expected '<id>\\t<name>', got {line!r}")
            idx = int(parts[0])
            if not 0 <= idx < num_classes or idx in names:
                raise AnnotationError(f"{path}:{lineno}: id {idx} out of range or repeated")
            names[idx] = parts[1].strip()
    missing = sorted(set(range(num_classes)) - names.keys())
    if missing:
        raise AnnotationError(f"{path}: ids {missing} have no name")
    return [names[i] for i in range(num_classes)]
