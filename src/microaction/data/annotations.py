"""Parsing of the official MA-52 list files and ``label_name.txt``.

A list line is ``<video file name> <fine id>``; blank lines are ignored and the
last line may lack a newline. Every problem is reported with file and line.

A video name is a relative path inside the split's folder (``videos_{split}/``):
an absolute path, a ``..`` or ``.`` component, an empty component, a backslash
or a control character is refused here, so no list line can name a file
elsewhere. Whether a name that is a symbolic link stays inside the dataset is a
question about the files, not the text; ``prepare_ma52`` checks it where it
opens them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from ..labels import LabelSpace

SPLITS = ("train", "val", "test")

LAYOUT_HELP = """expected the official MA-52 layout:
  <root>/train_list_videos.txt  val_list_videos.txt  test_list_videos.txt
  <root>/label_name.txt         (optional: "<fine id>\\t<name>" per line)
  <root>/videos_train/  videos_val/  videos_test/   (the .mp4 files the lists name)"""


class AnnotationError(ValueError):
    """A list or label file that does not follow the official format."""


class UnsafeNameError(AnnotationError):
    """A list line whose video name could lead outside the split's folder."""


@dataclass(frozen=True)
class ClipRecord:
    name: str
    label: int
    line: int


@dataclass(frozen=True)
class ProRecord:
    """An MA-52-Pro list line: the video, its emotion and the distinct micro-actions performed in it."""

    name: str
    emotion: int
    actions: tuple[int, ...]
    line: int


LIST_SUFFIX = "_list_videos.txt"


def list_path(root: Path, split: str) -> Path:
    return Path(root) / f"{split}{LIST_SUFFIX}"


def video_dir(root: Path, split: str) -> Path:
    return Path(root) / f"videos_{split}"


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain relative path inside a videos folder, or None when it is one."""
    if not name:
        return "is empty"
    bad = sorted({c for c in name if ord(c) < 32 or ord(c) == 127})
    if bad:
        return f"contains the control character(s) {', '.join(repr(c) for c in bad)}"
    if "\\" in name:
        return "contains a backslash (a folder separator on Windows)"
    if name.startswith("/"):
        return "is an absolute path"
    if PureWindowsPath(name).drive:
        return f"starts with a drive ({PureWindowsPath(name).drive})"
    parts = name.split("/")
    if ".." in parts:
        return "has a '..' component"
    if "." in parts:
        return "has a '.' component"
    if "" in parts:
        return "has an empty component (a doubled or trailing '/')"
    return None


def _videos_folder_hint(path: Path) -> str:
    split = path.name[: -len(LIST_SUFFIX)] if path.name.endswith(LIST_SUFFIX) else None
    return f"videos_{split}/" if split in SPLITS else "the split's videos folder"


def _lines(path: Path, expected: str = "<video file> <fine id>"):
    """Numbered lines of the file at ``path`` (LF, CR LF or CR ends a line); a line that is not
    UTF-8 is an error naming the file and line."""
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise AnnotationError(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start}); "
                                  f"expected '{expected}'") from None


def _class_count(num_classes: int | None) -> int:
    """``num_classes``, or MA-52's when None."""
    return LabelSpace.ma52().num_classes if num_classes is None else num_classes


def read_list(path: str | Path, num_classes: int | None = None) -> list[ClipRecord]:
    """The records of a list file; labels must lie in 0..num_classes-1 (None: MA-52's classes)."""
    num_classes = _class_count(num_classes)

    def parse(fields: list[str], where: str) -> tuple[int]:
        return (_class_id(fields[0], num_classes, where, "label"),)

    return [ClipRecord(name, label, line) for name, (label,), line in
            _read_records(path, 1, "<video file> <fine id>", parse)]


def read_pro_list(path: str | Path, num_emotions: int, num_classes: int | None = None) -> list[ProRecord]:
    """The records of an MA-52-Pro list file, ``<video> <emotion id> <fine id>[,<fine id>...]`` per line:
    the emotion in 0..num_emotions-1, one or more distinct fine ids in 0..num_classes-1 (None: MA-52's)."""
    num_classes = _class_count(num_classes)

    def parse(fields: list[str], where: str) -> tuple[int, tuple[int, ...]]:
        emotion = _class_id(fields[0], num_emotions, where, "emotion id")
        texts = fields[1].split(",")
        if "" in texts:
            raise AnnotationError(f"{where}: action list {fields[1]!r} has an empty entry; expected fine ids "
                                  "separated by commas, e.g. 7,13,40")
        actions = tuple(_class_id(t, num_classes, where, "fine id") for t in texts)
        repeated = sorted({a for a in actions if actions.count(a) > 1})
        if repeated:
            raise AnnotationError(f"{where}: fine id(s) {repeated} listed twice in {fields[1]!r}")
        return emotion, actions

    return [ProRecord(name, emotion, actions, line) for name, (emotion, actions), line in
            _read_records(path, 2, "<video file> <emotion id> <fine id>[,<fine id>...]", parse)]


def _class_id(text: str, count: int, where: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AnnotationError(f"{where}: {what} {text!r} is not an integer") from None
    if not 0 <= value < count:
        raise AnnotationError(f"{where}: {what} {value} outside 0..{count - 1}")
    return value


def _read_records(path: str | Path, num_fields: int, expected: str, parse) -> list[tuple[str, tuple, int]]:
    """(video name, ``parse(fields after the name, "file:line")``, line) of each non-blank line; the name
    checked by ``name_problem``, listed once; the file must have an entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}\n{LAYOUT_HELP}")
    records: list[tuple[str, tuple, int]] = []
    seen: dict[str, int] = {}
    for lineno, raw in _lines(path, expected):
        line = raw.strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != num_fields + 1:
            raise AnnotationError(f"{path}:{lineno}: expected '{expected}', got {line!r}")
        name = fields[0]
        problem = name_problem(name)
        if problem is not None:
            raise UnsafeNameError(
                f"{path}:{lineno}: video name {name!r} {problem}; expected a relative path inside "
                f"{_videos_folder_hint(path)} such as 0003_01_0001.mp4"
            )
        values = parse(fields[1:], f"{path}:{lineno}")
        if name in seen:
            raise AnnotationError(f"{path}:{lineno}: {name} already listed on line {seen[name]}")
        seen[name] = lineno
        records.append((name, values, lineno))
    if not records:
        raise AnnotationError(f"{path}: list file has no entries")
    return records


def read_label_names(path: str | Path, num_classes: int | None = None) -> list[str]:
    """Read ``label_name.txt`` (``<id><tab><name>``); every id 0..num_classes-1 once (None: MA-52's classes)."""
    num_classes = _class_count(num_classes)
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
