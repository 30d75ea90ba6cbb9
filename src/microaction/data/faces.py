"""Face tracks of MA-52-Pro clips: the CSV format, reading it into per-frame boxes, and face crops.

A track is ``faces_<split>/<video name with suffix .csv>`` under the dataset root, written by
``scripts/detect_faces.py`` (or a generator). Its header is ``frame,x0,y0,x1,y1,score``, optionally
followed by the ten landmark columns ``le_x,le_y,re_x,re_y,nose_x,nose_y,ml_x,ml_y,mr_x,mr_y`` (left
eye, right eye, nose, mouth left, mouth right; "left" is the image's left). There is one row per
frame in which a face was found: the 0-based decoded frame index, strictly increasing, then the
box and landmarks as fractions of the displayed frame's width (x) and height (y), all in [0, 1],
and the detector's score in [0, 1]. A file with only the header says no face was found in the
video; a missing file is an error, never read as "no face".

``read_track`` checks every line and fills the frames without a row: between two detections each
coordinate is interpolated linearly, before the first and after the last detection the nearest
one is held. ``crop_faces`` cuts a square around each frame's box (enlarged by a margin) and, when
the track has landmarks, turns it so the eyes are level; a track without any face gives the whole
frame, resized.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

from .annotations import name_problem
from ..utils.atomic import write_text_atomic

BOX_COLUMNS = ("frame", "x0", "y0", "x1", "y1", "score")
LANDMARK_COLUMNS = ("le_x", "le_y", "re_x", "re_y", "nose_x", "nose_y", "ml_x", "ml_y", "mr_x", "mr_y")
HEADER = ",".join(BOX_COLUMNS)
HEADER_WITH_LANDMARKS = ",".join(BOX_COLUMNS + LANDMARK_COLUMNS)
TRACK_SUFFIX = ".csv"
HOW_TO_MAKE = ("make the tracks with `python scripts/detect_faces.py ROOT` (needs the faces extra: "
               "pip install -e \".[faces]\"; see docs/ma52pro_faces.md)")
DEFAULT_MARGIN = 0.25
# Supersampling cap for a crop much larger than the output: enough to stop aliasing at typical
# face sizes without making a crop of a huge box expensive.
_MAX_SUPERSAMPLE = 4


class FaceTrackError(ValueError):
    """A face track file that does not follow the format; the message names the file and line."""


class FaceTrackMissingError(FileNotFoundError):
    """A listed video whose face track file does not exist."""


def faces_dir(root: str | Path, split: str) -> Path:
    return Path(root) / f"faces_{split}"


def track_path(root: str | Path, split: str, name: str) -> Path:
    """``<root>/faces_<split>/<name with its suffix replaced by .csv>``.

    ``name`` is the video's name as a list gives it (a relative path inside ``videos_<split>/``);
    a name that could lead elsewhere (absolute, ``..``, see ``annotations.name_problem``) is refused.
    """
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"video name {name!r} {problem}; expected a relative path inside videos_{split}/")
    return faces_dir(root, split) / PurePosixPath(name).with_suffix(TRACK_SUFFIX)


@dataclass(frozen=True, eq=False)
class FaceTrack:
    """One video's face per frame, for frames 0..num_frames-1, gaps filled (see ``read_track``).

    ``boxes`` float64 [N, 4] (x0, y0, x1, y1) and ``landmarks`` float64 [N, 5, 2] (x, y of left eye,
    right eye, nose, mouth left, mouth right) or None, as fractions of the displayed frame;
    ``detected`` bool [N], True where the file has a row; ``scores`` float64 [N], the detector's
    score on those frames and 0 elsewhere. A track without any detection (``found`` False) has
    boxes covering the whole frame. The arrays are read-only.
    """

    boxes: np.ndarray
    detected: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None
    path: str = ""

    def __post_init__(self):
        for array in (self.boxes, self.detected, self.scores, self.landmarks):
            if array is not None:
                array.setflags(write=False)

    @property
    def found(self) -> bool:
        """Whether any frame has a face (False for a file with only its header)."""
        return bool(self.detected.any())

    @property
    def num_frames(self) -> int:
        return len(self.boxes)


# --- reading -------------------------------------------------------------------------------------


def _header_problem(fields: list[str]) -> str:
    return (f"expected the header line '{HEADER}', optionally followed by ',{','.join(LANDMARK_COLUMNS)}'; "
            f"got {','.join(fields)!r}")


def _parse_number(path: Path, lineno: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise FaceTrackError(f"{path}:{lineno}: {column} {text!r} is not a number; expected a finite decimal "
                             f"number in [0, 1]")
    return value


def _check_row(where: str, columns: Sequence[str], values: Sequence[float]) -> None:
    """Range checks shared by the reader and the writer; ``values`` excludes the frame index."""
    for column, value in zip(columns, values):
        if not 0.0 <= value <= 1.0:
            what = ("the detector's score" if column == "score" else
                    f"a fraction of the frame's {'width' if column.endswith('x') or column[0] == 'x' else 'height'}")
            raise FaceTrackError(f"{where}: {column} = {value:g} is outside [0, 1]; expected {what}")
    x0, y0, x1, y1 = values[:4]
    if x1 <= x0:
        raise FaceTrackError(f"{where}: x1 = {x1:g} is not right of x0 = {x0:g}; expected x0 < x1")
    if y1 <= y0:
        raise FaceTrackError(f"{where}: y1 = {y1:g} is not below y0 = {y0:g}; expected y0 < y1")


def read_track(path: str | Path, num_frames: int | None = None) -> FaceTrack:
    """Read and check a face track; returns it filled for frames 0..num_frames-1.

    With ``num_frames`` (the video's frame count) a row for frame ``num_frames`` or later is an
    error; without it the track ends at its last row (so a header-only file gives 0 frames).
    Frames without a row are filled: linearly between the two detections around them, with the
    nearest detection before the first and after the last. Raises ``FaceTrackMissingError`` for a
    missing file and ``FaceTrackError``, naming the file and line and what was expected, for a
    malformed one (header, column count, numbers, ranges, x1 <= x0, frame order).
    """
    path = Path(path)
    if num_frames is not None and num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FaceTrackMissingError(f"{path}: face track not found (every listed video needs one); "
                                    f"{HOW_TO_MAKE}") from None
    except IsADirectoryError:
        raise FaceTrackError(f"{path}: is a folder; expected a face track file") from None
    lines = data.splitlines()

    def text_of(lineno: int) -> str:
        try:
            return lines[lineno - 1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise FaceTrackError(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start}); expected "
                                 f"comma-separated numbers") from None

    if not lines or not text_of(1).strip():
        raise FaceTrackError(f"{path}:1: the file is empty; expected the header line '{HEADER}' (a video with no "
                             f"face keeps the header and no rows)")
    header = [f.strip() for f in text_of(1).split(",")]
    if tuple(header) == BOX_COLUMNS + LANDMARK_COLUMNS:
        has_landmarks = True
    elif tuple(header) == BOX_COLUMNS:
        has_landmarks = False
    else:
        raise FaceTrackError(f"{path}:1: {_header_problem(header)}")
    columns = header[1:]
    frames: list[int] = []
    rows: list[list[float]] = []
    previous_line = 0
    for lineno in range(2, len(lines) + 1):
        text = text_of(lineno)
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != len(header):
            raise FaceTrackError(f"{path}:{lineno}: {len(fields)} comma-separated values; expected {len(header)} "
                                 f"({','.join(header)})")
        try:
            frame = int(fields[0])
        except ValueError:
            raise FaceTrackError(f"{path}:{lineno}: frame {fields[0]!r} is not a whole number; expected a 0-based "
                                 f"frame index") from None
        if frame < 0:
            raise FaceTrackError(f"{path}:{lineno}: frame {frame} is negative; expected a 0-based frame index")
        if frames and frame <= frames[-1]:
            raise FaceTrackError(f"{path}:{lineno}: frame {frame} does not come after frame {frames[-1]} (line "
                                 f"{previous_line}); expected frame indices strictly increasing, one row per frame")
        if num_frames is not None and frame >= num_frames:
            raise FaceTrackError(f"{path}:{lineno}: frame {frame} is beyond the video's {num_frames} frames; "
                                 f"expected a frame index in 0..{num_frames - 1} (is the track for another "
                                 f"version of the video?)")
        values = [_parse_number(path, lineno, c, t) for c, t in zip(columns, fields[1:])]
        _check_row(f"{path}:{lineno}", columns, values)
        frames.append(frame)
        rows.append(values)
        previous_line = lineno
    n = num_frames if num_frames is not None else (frames[-1] + 1 if frames else 0)
    return _filled(path, n, np.asarray(frames, np.int64), np.asarray(rows, np.float64).reshape(len(rows), len(columns)),
                   has_landmarks)


def _filled(path: Path, n: int, frames: np.ndarray, rows: np.ndarray, has_landmarks: bool) -> FaceTrack:
    detected = np.zeros(n, bool)
    scores = np.zeros(n, np.float64)
    if len(frames) == 0:
        boxes = np.tile(np.array([0.0, 0.0, 1.0, 1.0]), (n, 1))
        return FaceTrack(boxes, detected, scores, None, str(path))
    detected[frames] = True
    scores[frames] = rows[:, 4]
    grid = np.arange(n, dtype=np.float64)
    # np.interp: linear between the given points, the end values held outside them
    coords = np.delete(rows, 4, axis=1)
    filled = np.stack([np.interp(grid, frames, coords[:, k]) for k in range(coords.shape[1])], axis=1)
    filled = filled.reshape(n, -1)
    boxes = np.ascontiguousarray(filled[:, :4])
    landmarks = np.ascontiguousarray(filled[:, 4:].reshape(n, 5, 2)) if has_landmarks else None
    return FaceTrack(boxes, detected, scores, landmarks, str(path))


# --- writing -------------------------------------------------------------------------------------


def format_rows(rows: Iterable[Sequence[float]], landmarks: bool | None = None) -> str:
    """The text of a track file for ``rows`` (see ``write_track``), checked as ``read_track`` checks it."""
    rows = [list(r) for r in rows]
    if landmarks is None:
        landmarks = bool(rows) and len(rows[0]) == len(BOX_COLUMNS) + len(LANDMARK_COLUMNS)
    header = BOX_COLUMNS + (LANDMARK_COLUMNS if landmarks else ())
    out = [",".join(header)]
    previous = -1
    for i, row in enumerate(rows):
        where = f"row {i}"
        if len(row) != len(header):
            raise FaceTrackError(f"{where}: {len(row)} values; expected {len(header)} ({','.join(header)})")
        frame = row[0]
        if isinstance(frame, (float, np.floating)) and not float(frame).is_integer():
            raise FaceTrackError(f"{where}: frame {frame} is not a whole number; expected a 0-based frame index")
        frame = int(frame)
        if frame < 0 or frame <= previous:
            raise FaceTrackError(f"{where}: frame {frame} after frame {previous}; expected non-negative frame "
                                 f"indices, strictly increasing")
        previous = frame
        # Six decimals: a thousandth of a pixel on a 4K frame. The rounded values are the ones checked.
        texts = [f"{float(v):.6f}" for v in row[1:]]
        values = [float(t) for t in texts]
        if not all(math.isfinite(v) for v in values):
            raise FaceTrackError(f"{where}: {row[1:]} holds a value that is not a finite number")
        _check_row(where, header[1:], values)
        out.append(",".join([str(frame), *texts]))
    return "\n".join(out) + "\n"


def write_track(path: str | Path, rows: Iterable[Sequence[float]], landmarks: bool | None = None) -> Path:
    """Write a face track atomically (temporary name in the same folder, fsync, rename).

    Each row is ``(frame, x0, y0, x1, y1, score)`` or that plus the ten landmark values, as
    fractions of the displayed frame. ``landmarks`` says whether the file has the landmark
    columns; None takes it from the first row (no rows: no landmark columns). Rows are checked as
    ``read_track`` checks them before anything is written, so a file this writes always reads
    back; an existing file is replaced only by a complete one. Missing folders are made.
    """
    return write_text_atomic(path, format_rows(rows, landmarks), newline="\n")


# --- crops ---------------------------------------------------------------------------------------


def _track_rows(track: FaceTrack, indices: np.ndarray) -> np.ndarray:
    """Row of the track for each frame index; an index past the track's end holds its last row."""
    if len(indices) and indices.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {indices.min()}")
    return np.minimum(indices, track.num_frames - 1)


def crop_faces(
    frames: np.ndarray,
    track: FaceTrack,
    indices: Sequence[int] | np.ndarray,
    size: int,
    align: bool = True,
    margin: float = DEFAULT_MARGIN,
) -> np.ndarray:
    """Square face crops of ``frames``; returns uint8 [T, size, size, 3].

    ``frames`` uint8 [T, H, W, 3] are the decoded frames number ``indices`` of the video (any
    size: the track's coordinates are fractions). Each crop is centred on the frame's box; its side
    is the box's longer side times ``1 + 2 * margin`` (``margin`` of the box's longer side added on
    every side). With landmarks and ``align`` the square is turned about its centre so the line
    from the left to the right eye comes out horizontal (a rotation, no scaling or mirroring).
    What falls outside the frame is black. Sampling is bilinear, averaged over up to 4 x 4
    samples per output pixel when the square is several times larger than ``size``.

    A track with no face (``track.found`` False) gives each whole frame resized to
    size x size (aspect not kept); the caller counts these. An index past the end of the track
    holds its last row, as ``read_track`` holds the last detection.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(indices)} indices; expected one index per frame")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    out = np.empty((len(frames), size, size, 3), np.uint8)
    if not len(frames):
        return out
    if not track.found:
        for t, frame in enumerate(frames):
            out[t] = _resize(frame, size)
        return out
    rows = _track_rows(track, indices)
    height, width = frames.shape[1:3]
    scale = np.array([width, height, width, height], np.float64)
    for t, (frame, row) in enumerate(zip(frames, rows)):
        x0, y0, x1, y1 = track.boxes[row] * scale
        side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
        angle = 0.0
        if align and track.landmarks is not None:
            (lx, ly), (rx, ry) = track.landmarks[row, :2] * scale[:2]
            if (lx, ly) != (rx, ry):
                angle = math.atan2(ry - ly, rx - lx)
        out[t] = _sample_square(frame, ((x0 + x1) / 2, (y0 + y1) / 2), side, angle, size)
    return out


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _sample_square(frame: np.ndarray, centre: tuple[float, float], side: float, angle: float,
                   size: int) -> np.ndarray:
    """The square of ``side`` pixels centred at ``centre`` (pixel edges at whole numbers: pixel i
    spans [i, i + 1)), turned by ``angle`` radians, sampled to size x size; black outside."""
    height, width = frame.shape[:2]
    k = int(min(_MAX_SUPERSAMPLE, max(1, side // size)))
    m = size * k
    steps = (np.arange(m, dtype=np.float64) + 0.5) / m - 0.5  # output sample positions in [-0.5, 0.5)
    du, dv = np.meshgrid(steps * side, steps * side, indexing="xy")
    c, s = math.cos(angle), math.sin(angle)
    # output x runs along (cos, sin) in the frame, output y along (-sin, cos): a rotation
    px = centre[0] + c * du - s * dv
    py = centre[1] + s * du + c * dv
    # Only the part of the frame the samples reach (plus the bilinear neighbours) is converted.
    xs = int(np.clip(math.floor(px.min()) - 2, 0, width))
    xe = int(np.clip(math.ceil(px.max()) + 2, 0, width))
    ys = int(np.clip(math.floor(py.min()) - 2, 0, height))
    ye = int(np.clip(math.ceil(py.max()) + 2, 0, height))
    if xe <= xs or ye <= ys:
        return np.zeros((size, size, 3), np.uint8)
    patch = torch.from_numpy(np.ascontiguousarray(frame[ys:ye, xs:xe])).permute(2, 0, 1)[None].float()
    # grid_sample with align_corners=False: -1 and 1 are the outer edges of the patch
    gx = 2.0 * (px - xs) / (xe - xs) - 1.0
    gy = 2.0 * (py - ys) / (ye - ys) - 1.0
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1)[None]).float()
    y = F.grid_sample(patch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if k > 1:
        y = F.avg_pool2d(y, k)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
