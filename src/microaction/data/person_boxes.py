"""One person box per clip, for crops centred on the person (``data.person_crop``).

``detect_people(ROOT, OUT)`` (the command line is ``scripts/detect_people.py``) reads the list files of
an MA-52 root, decodes a few evenly spaced frames of each listed clip (the TSN segment centres), runs
OpenCV's HOG people detector on them (its linear SVM ships inside opencv-python-headless, the ``faces``
extra: nothing is downloaded), keeps the largest person of each frame and writes, per split, the
median box over the frames with a person.

The cache is one CSV per split, ``<OUT>/<split>.csv``, with the header ``video,x0,y0,x1,y1,score`` and
one row per listed clip: the box as fractions of the displayed frame's width (x) and height (y), in
[0, 1], and the detector's confidence (the logistic of the SVM margin, averaged over the frames with a
person); a clip in which no frame showed a person has empty box and score fields. A split's file is
written whole or not at all (under a temporary name, then renamed); a rerun skips the splits whose file
exists.

``person_centres`` reads a split's file for the datamodule: the centre of each clip's box. A clip with
no box (none found, or not in the file) is cropped around the frame's centre; such clips are counted
and logged per split.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..utils.atomic import atomic_open
from .annotations import SPLITS, list_path, read_list, video_dir
from .face_detection import EXTRA_HINT, DetectorUnavailable, Face, face_row
from .sampling import segment_indices
from .video import DecodeError, read_frames

log = logging.getLogger(__name__)

HEADER = ("video", "x0", "y0", "x1", "y1", "score")
DEFAULT_FRAMES = 4
DEFAULT_SHORT_SIDE = 256


class PersonBoxError(ValueError):
    """A person-box file that does not follow the format; the message names the file and line."""


def boxes_path(folder: str | Path, split: str) -> Path:
    return Path(folder) / f"{split}.csv"


# --- the file ----------------------------------------------------------------------------------------------


def read_boxes(path: str | Path) -> dict[str, tuple[float, float, float, float] | None]:
    """Video name -> box (x0, y0, x1, y1 fractions) or None (no person found), every line checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"person boxes not found: {path}; write them with `python scripts/detect_people.py "
                                f"ROOT {path.parent}` (data.person_crop names that folder)")
    out: dict[str, tuple[float, float, float, float] | None] = {}
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise PersonBoxError(f"{path}:1: expected the header {','.join(HEADER)}, got {header!r}")
        for lineno, row in enumerate(rows, start=2):
            if not row:
                continue
            where = f"{path}:{lineno}"
            if len(row) != len(HEADER):
                raise PersonBoxError(f"{where}: expected {len(HEADER)} fields ({','.join(HEADER)}), got {len(row)}")
            name, *numbers = (v.strip() for v in row)
            if name in out:
                raise PersonBoxError(f"{where}: {name} is listed twice")
            if all(v == "" for v in numbers):
                out[name] = None
                continue
            try:
                x0, y0, x1, y1, score = (float(v) for v in numbers)
            except ValueError:
                raise PersonBoxError(f"{where}: expected four fractions and a score (or all five empty: no person), "
                                     f"got {numbers}") from None
            if not all(0 <= v <= 1 for v in (x0, y0, x1, y1, score)) or x0 >= x1 or y0 >= y1:
                raise PersonBoxError(f"{where}: expected 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1 and a score in [0, 1], "
                                     f"got {numbers}")
            out[name] = (x0, y0, x1, y1)
    return out


def write_boxes(path: str | Path, rows: Sequence[tuple[str, tuple[float, ...] | None, float | None]]) -> Path:
    """``(video, box or None, score or None)`` rows as a box file, written whole or not at all."""
    with atomic_open(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for name, box, score in rows:
            w.writerow([name, *(("",) * 5 if box is None else (*(f"{v:.6f}" for v in box), f"{score:.6f}"))])
    return Path(path)


def person_centres(folder: str | Path, split: str, names: Sequence[str]) -> tuple[dict[str, tuple[float, float]],
                                                                                   list[str]]:
    """(name -> box centre (x, y fractions) of the clips of ``names`` that have a box, the names without one)
    from ``<folder>/<split>.csv``."""
    boxes = read_boxes(boxes_path(folder, split))
    centres: dict[str, tuple[float, float]] = {}
    missing: list[str] = []
    for name in names:
        box = boxes.get(name)
        if box is None:
            missing.append(name)
        else:
            centres[name] = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    return centres, missing


# --- the detector ------------------------------------------------------------------------------------------


class HogPeopleDetector:
    """OpenCV's HOG + linear SVM people detector (Dalal and Triggs; the SVM ships with OpenCV).

    ``score`` is the logistic of the SVM margin: a monotone confidence for ranking, not a probability.
    Frames are searched at scales ``scale`` apart, with windows ``stride`` pixels apart."""

    name = "hog"
    landmarks = False

    def __init__(self, stride: int = 4, padding: int = 8, scale: float = 1.05):
        try:
            import cv2
        except ImportError as err:
            raise DetectorUnavailable(f"the person detector needs OpenCV ({err}); install the faces extra: "
                                      f"{EXTRA_HINT}") from None
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.stride, self.padding, self.scale = stride, padding, scale

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        rects, weights = self._hog.detectMultiScale(np.ascontiguousarray(rgb), winStride=(self.stride, self.stride),
                                                    padding=(self.padding, self.padding), scale=self.scale)
        return [Face((float(x), float(y), float(x + w), float(y + h)), 1.0 / (1.0 + math.exp(-float(weight))))
                for (x, y, w, h), weight in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1))]


@dataclass
class ClipBox:
    box: tuple[float, float, float, float] | None  # median over the frames with a person; fractions
    score: float | None
    found: int  # frames with a person
    looked: int  # frames given to the detector


def detect_clip(path: str | Path, detector: Callable[[np.ndarray], list[Face]], frames: int = DEFAULT_FRAMES,
                short_side: int | None = DEFAULT_SHORT_SIDE) -> ClipBox:
    """The person box of one clip: ``detector``'s largest person in each of ``frames`` segment-centre frames
    (``face_detection.face_row``: as fractions of the frame), the per-coordinate median over the frames with
    one. ``DecodeError`` when the clip cannot be decoded."""
    images = read_frames(path, lambda n: segment_indices(n, frames, False), short_side=short_side)
    rows = [r for r in (face_row(detector, i, rgb, with_landmarks=False) for i, rgb in enumerate(images))
            if r is not None]
    if not rows:
        return ClipBox(None, None, 0, len(images))
    found = np.asarray(rows, dtype=np.float64)
    box = tuple(float(v) for v in np.median(found[:, 1:5], axis=0))
    return ClipBox(box, float(found[:, 5].mean()), len(rows), len(images))


# --- the run -----------------------------------------------------------------------------------------------


class DetectPeopleError(RuntimeError):
    """Stops the run: bad arguments or list lines, the detector's package missing."""


@dataclass
class PeopleSummary:
    written: dict[str, str] = field(default_factory=dict)  # split -> file written by this run
    skipped: list[str] = field(default_factory=list)  # splits whose file was already there
    clips: int = 0
    with_person: int = 0
    problems: list[str] = field(default_factory=list)  # clips that could not be decoded (written without a box)

    @property
    def ok(self) -> bool:
        return not self.problems


def detect_people(root: str | Path, out: str | Path, splits: Sequence[str] = SPLITS, frames: int = DEFAULT_FRAMES,
                  short_side: int | None = DEFAULT_SHORT_SIDE, detector: Callable | None = None,
                  progress: Callable[[str, int, int], None] | None = None) -> PeopleSummary:
    """Write ``<out>/<split>.csv`` for each split of ``root`` that has none yet (module docstring).

    Every list file is read (and checked) before any clip is decoded. A clip that cannot be decoded gets a
    row without a box and is named in the summary's problems. ``detector`` defaults to ``HogPeopleDetector``;
    ``progress(split, done, total)`` is called after each clip.
    """
    root = Path(root).expanduser()
    out = Path(out).expanduser()
    if not root.is_dir():
        raise DetectPeopleError(f"dataset root does not exist: {root}")
    for split in splits:
        if split not in SPLITS:
            raise DetectPeopleError(f"unknown split {split!r}; choose from {SPLITS}")
    if frames < 1:
        raise DetectPeopleError(f"--frames must be >= 1, got {frames}")
    if short_side is not None and short_side and short_side < 64:
        raise DetectPeopleError(f"--short-side must be 0 (frames as stored) or >= 64 (the detector's window is "
                                f"64 x 128 pixels), got {short_side}")
    summary = PeopleSummary()
    todo = []
    for split in splits:
        if boxes_path(out, split).exists():
            read_boxes(boxes_path(out, split))  # a file in the way that is not a box file stops the run here
            summary.skipped.append(split)
            continue
        path = list_path(root, split)
        if not path.is_file():
            raise DetectPeopleError(f"list file not found: {path}; expected the MA-52 layout "
                                    f"(<split>_list_videos.txt beside videos_<split>/), or choose --splits")
        try:
            todo.append((split, read_list(path)))
        except ValueError as err:
            raise DetectPeopleError(str(err)) from None
    if not todo:
        return summary
    if detector is None:
        try:
            detector = HogPeopleDetector()
        except DetectorUnavailable as err:
            raise DetectPeopleError(str(err)) from None
    for split, records in todo:
        rows = []
        folder = video_dir(root, split)
        for k, rec in enumerate(records):
            src = folder / rec.name
            try:
                found = detect_clip(src, detector, frames, short_side or None)
            except (DecodeError, OSError) as err:
                summary.problems.append(f"{list_path(root, split)}:{rec.line}: {src}: {err}")
                rows.append((rec.name, None, None))
            else:
                rows.append((rec.name, found.box, found.score))
                summary.with_person += found.box is not None
            if progress is not None:
                progress(split, k + 1, len(records))
        summary.clips += len(records)
        os.makedirs(out, exist_ok=True)
        summary.written[split] = str(write_boxes(boxes_path(out, split), rows))
    return summary
