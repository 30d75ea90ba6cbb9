"""Micro-actions along a long video: sliding windows, their frames, and the timeline they add up to.

A model trained on MA-52 classifies a short clip. A longer recording (an interview of minutes) is
cut into overlapping windows of about one MA-52 clip each; every window is classified as a clip;
the windows' class probabilities are then merged into segments (start, end, action, body part,
score) per video. This module holds everything of that except the model:

- ``plan_windows`` lays the windows over a video's frames, ``window_indices`` picks the T frames
  of a window as the evaluation sampler picks them from a clip (``segment_indices``, test mode);
- ``iter_window_frames`` decodes the video once and hands out each window's frames, holding only
  the frames that windows not yet handed out still need;
- ``merge_segments`` turns per-window probabilities into segments, ``frame_labels``,
  ``frame_accuracy`` and ``segment_f1`` score them against a ground truth;
- ``write_timeline`` / ``read_timeline`` / ``read_timeline_csv`` store them (JSON and CSV),
  ``plot_timeline`` draws them (one row per body part).

Times are frame / fps with the video's mean frame rate (``probe``): exact for constant-rate
footage, a close approximation for a variable-rate phone recording.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data.sampling import segment_indices
from .data.video import DecodeStats, iter_frames
from .utils.atomic import atomic_open, save_figure

# MA-52's clips last 1 to 7 s, 1.9 s on average (the MA-52 paper, section III-B: 22,422 clips, 12.29 h
# in all; the dataset spec: "1-7 s, mean 1.9 s"). A window of 2 s holds one typical clip, the input the
# model was trained on; half a window as stride puts every instant in two windows, so an action cut by
# one window's edge lies inside the next.
DEFAULT_WINDOW_S = 2.0
DEFAULT_STRIDE_S = 1.0
# The averaged probability a cell's top class needs to be named; below it the cell holds no action. The
# classifier has no "no action" class (every training clip holds one), so this cut is what says "none".
DEFAULT_THRESHOLD = 0.3

NONE = -1  # frame label of a frame in no segment


# --- windows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Frames ``first`` .. ``end - 1`` of a video, ``start_s`` .. ``end_s`` seconds; ``whole``: the video
    is shorter than one window and this one window is all of it."""

    index: int
    first: int
    end: int
    start_s: float
    end_s: float
    whole: bool = False

    @property
    def num_frames(self) -> int:
        return self.end - self.first


def _positive(value: Any, key: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{key} must be {what}, got {value!r}")
    return float(value)


def plan_windows(
    num_frames: int, fps: float, window_s: float = DEFAULT_WINDOW_S, stride_s: float = DEFAULT_STRIDE_S
) -> list[Window]:
    """Windows of ``window_s`` seconds every ``stride_s`` seconds over a video of ``num_frames`` at ``fps``.

    Both lengths are rounded to whole frames (at least one). Windows start at frame 0 and every
    stride after it; when the last of those ends before the video does, one more window is added
    that ends at the last frame, so the tail is covered (it overlaps its predecessor by more than
    the others do). A video shorter than one window gets a single window over all of it, marked
    ``whole``. Refused with a ``ValueError`` naming the setting: ``predict.window_s`` or
    ``predict.stride_s`` not a positive number, a stride longer than the window (the windows would
    leave gaps no window sees), fewer than one frame, a frame rate that is not a positive number.
    """
    window_s = _positive(window_s, "predict.window_s", "a positive number of seconds")
    stride_s = _positive(stride_s, "predict.stride_s", "a positive number of seconds")
    if stride_s > window_s:
        raise ValueError(f"predict.stride_s must be at most predict.window_s ({window_s:g} s): a longer stride "
                         f"leaves gaps between the windows; got {stride_s:g} s")
    fps = _positive(fps, "fps", "a positive frame rate")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames!r}")
    num_frames = int(num_frames)
    length = max(1, round(window_s * fps))
    stride = max(1, round(stride_s * fps))
    if num_frames <= length:
        return [Window(0, 0, num_frames, 0.0, num_frames / fps, whole=num_frames < length)]
    firsts = list(range(0, num_frames - length + 1, stride))
    if firsts[-1] + length < num_frames:
        firsts.append(num_frames - length)
    return [Window(i, f, f + length, f / fps, (f + length) / fps) for i, f in enumerate(firsts)]


def window_indices(window: Window, num_segments: int) -> np.ndarray:
    """The ``num_segments`` frames (video frame numbers, ascending) the evaluation sampler takes from the
    window, as it takes them from a clip: the centre of each of T equal segments."""
    return window.first + segment_indices(window.num_frames, num_segments, train=False)


def sample_indices(windows: Sequence[Window], num_segments: int) -> list[np.ndarray]:
    """``window_indices`` of every window."""
    return [window_indices(w, num_segments) for w in windows]


# --- the windows' frames, streamed ------------------------------------------------------------------


@dataclass
class StreamStats:
    """What ``iter_window_frames`` did so far: frames ``decoded`` (every frame up to the last one needed,
    once), frames ``converted`` (each needed frame once, however many windows share it), ``held`` (the
    converted frames kept now for windows not yet handed out), its peak ``max_held``, and the windows
    handed out (``yielded``)."""

    decoded: int = 0
    converted: int = 0
    held: int = 0
    max_held: int = 0
    yielded: int = 0


def iter_window_frames(
    path: str | Path,
    windows: Sequence[Window],
    indices_per_window: Sequence[np.ndarray],
    short_side: int | None = None,
    threads: int = 1,
    *,
    stats: StreamStats | None = None,
) -> Iterator[tuple[Window, np.ndarray]]:
    """Each window with its frames, uint8 [T, H, W, 3], in the order of ``windows``.

    The video is decoded once, forward from its start (``iter_frames``); a frame some window needs is
    converted once (display orientation, short side ``short_side``, as ``read_frames`` gives it) and
    kept until every window that needs it has been handed out. Windows overlap, so neighbours share
    frames; what is held at once is what the windows open at one moment need (for the default plan
    about two windows' frames), whatever the video's length. A window is handed out as soon as its
    last frame is decoded and every window before it has been.

    One forward pass is chosen over seeking to the keyframe before each window (``read_frames`` with
    ``seek``): overlapping windows cover every frame, so one pass decodes each frame once, while a
    pass per window decodes each frame once per window holding it, plus the stretch from the keyframe
    before the window, and in a file with a single keyframe every window decodes from the start.

    ``indices_per_window[i]`` are window i's frames (``sample_indices``); an index outside its window
    is a ``ValueError``. A file that cannot be read, or that holds fewer frames than the windows need,
    raises ``DecodeError`` naming it. ``stats``, when given, is kept up to date.
    """
    if len(indices_per_window) != len(windows):
        raise ValueError(f"{len(windows)} windows but {len(indices_per_window)} index lists")
    if stats is None:
        stats = StreamStats()
    wanted: list[list[int]] = []
    for window, idx in zip(windows, indices_per_window):
        idx = [int(i) for i in np.asarray(idx).reshape(-1)]
        if not idx:
            raise ValueError(f"window {window.index}: no frames to sample")
        if min(idx) < window.first or max(idx) >= window.end:
            raise ValueError(f"window {window.index} (frames {window.first}..{window.end - 1}) was given frames "
                             f"{min(idx)}..{max(idx)} outside it")
        wanted.append(idx)
    # how many windows still need each frame, and which windows are complete once a frame is decoded
    users: dict[int, int] = {}
    completes: dict[int, list[int]] = {}
    for w, idx in enumerate(wanted):
        for i in set(idx):
            users[i] = users.get(i, 0) + 1
        completes.setdefault(max(idx), []).append(w)

    held: dict[int, np.ndarray] = {}
    complete = [False] * len(windows)
    next_out = 0
    decode_stats = DecodeStats()
    with contextlib.closing(iter_frames(path, users, short_side, threads, stats=decode_stats)) as frames:
        for k, frame in frames:
            stats.decoded = decode_stats.decoded
            stats.converted += 1
            held[k] = frame
            stats.held = len(held)
            stats.max_held = max(stats.max_held, stats.held)
            for w in completes.get(k, ()):
                complete[w] = True
            while next_out < len(windows) and complete[next_out]:
                idx = wanted[next_out]
                clip = np.stack([held[i] for i in idx])
                for i in set(idx):
                    users[i] -= 1
                    if users[i] == 0:
                        del held[i]
                stats.held = len(held)
                stats.yielded += 1
                yield windows[next_out], clip
                next_out += 1
        stats.decoded = decode_stats.decoded


# --- windows -> segments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One action over frames ``first_frame`` .. ``end_frame - 1`` (``start_s`` .. ``end_s`` seconds) of a
    video: its class id and name, its body part, and its score (the mean over the segment's frames of
    the class's probability averaged over the windows covering each frame)."""

    start_s: float
    end_s: float
    first_frame: int
    end_frame: int
    class_id: int
    class_name: str
    body_part: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SEGMENT_TYPES: dict[str, tuple[type, ...]] = {
    "start_s": (int, float), "end_s": (int, float), "first_frame": (int,), "end_frame": (int,),
    "class_id": (int,), "class_name": (str,), "body_part": (str,), "score": (int, float),
}


def _segment_from(data: Any, where: str) -> Segment:
    """A Segment from its ``to_dict`` form; a missing key or a value of the wrong kind is named."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected an object with keys {list(_SEGMENT_TYPES)}, got {data!r:.100}")
    missing = [k for k in _SEGMENT_TYPES if k not in data]
    unknown = [k for k in data if k not in _SEGMENT_TYPES]
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else [])))
    for key, kinds in _SEGMENT_TYPES.items():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"{where}.{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r:.100}")
    segment = Segment(**{k: float(data[k]) if float in _SEGMENT_TYPES[k] else data[k] for k in _SEGMENT_TYPES})
    if not 0 <= segment.first_frame < segment.end_frame:
        raise ValueError(f"{where}: frames {segment.first_frame}..{segment.end_frame} are no segment "
                         f"(need 0 <= first_frame < end_frame)")
    return segment


def _cells(windows: Sequence[Window]) -> tuple[np.ndarray, dict[int, float]]:
    """The frame boundaries every window starts or ends at (ascending), and each one's time in seconds."""
    times: dict[int, float] = {}
    for w in windows:
        times.setdefault(w.first, w.start_s)
        times.setdefault(w.end, w.end_s)
    return np.array(sorted(times), dtype=np.int64), times


def merge_segments(
    windows: Sequence[Window],
    probs: np.ndarray,
    class_names: Sequence[str],
    body_parts: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    multi_label: bool = False,
) -> list[Segment]:
    """Segments of one video from its windows' class probabilities ``probs`` [W, C].

    The window edges cut the video into cells (with the default plan, stride-long stretches); every
    frame of a cell lies in the same windows, and the cell's probabilities are their mean. A cell
    names its top class when that class's mean probability is at least ``threshold``, else no action;
    consecutive cells naming the same class are one segment, scored with the mean over its frames of
    that class's cell probability. A cell no window covers names no action. With ``multi_label``
    (a model of independent per-class probabilities, e.g. MA-52-Pro's) every class at or above
    ``threshold`` names the cell, and one class's consecutive cells make its segments, so segments of
    different classes may overlap. Segments come sorted by start, then class id.

    ``class_names[c]`` and ``body_parts[c]`` are class c's name and body part (``labels_of``).
    Refused (``ValueError``): probabilities not [len(windows), len(class_names)], not finite or
    outside 0..1; ``predict.threshold`` outside 0..1; name or body-part lists of another length.
    """
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(windows), num_classes):
        raise ValueError(f"probs must be [windows, classes] = [{len(windows)}, {num_classes}], got {list(probs.shape)}")
    if len(body_parts) != num_classes:
        raise ValueError(f"body_parts names {len(body_parts)} classes, class_names {num_classes}")
    if not np.all(np.isfinite(probs)) or probs.min(initial=0) < 0 or probs.max(initial=0) > 1 + 1e-6:
        raise ValueError("probs must be probabilities (finite, 0..1): apply softmax or sigmoid to the logits first")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"predict.threshold must be a probability in 0..1, got {threshold!r}")
    if not windows:
        return []
    bounds, times = _cells(windows)
    # sum and count of the windows covering each cell, by adding each window at its first cell and
    # taking it away after its last (a running sum over the cells)
    delta = np.zeros((len(bounds), num_classes))
    count = np.zeros(len(bounds))
    at = {int(b): i for i, b in enumerate(bounds)}
    for w, p in zip(windows, probs):
        delta[at[w.first]] += p
        delta[at[w.end]] -= p
        count[at[w.first]] += 1
        count[at[w.end]] -= 1
    sums = np.cumsum(delta, axis=0)[:-1]
    counts = np.cumsum(count)[:-1]
    covered = counts > 0.5
    cell_probs = np.where(covered[:, None], sums / np.maximum(counts, 1)[:, None], 0.0)
    lengths = np.diff(bounds)

    if multi_label:
        labels = [np.where(covered & (cell_probs[:, c] >= threshold), c, NONE) for c in range(num_classes)]
    else:
        top = np.argmax(cell_probs, axis=1)
        top_score = cell_probs[np.arange(len(top)), top]
        labels = [np.where(covered & (top_score >= threshold), top, NONE)]

    segments = []
    for label in labels:
        start = 0
        for i in range(1, len(label) + 1):
            if i < len(label) and label[i] == label[start]:
                continue
            c = int(label[start])
            if c != NONE:
                weights = lengths[start:i]
                score = float(np.dot(cell_probs[start:i, c], weights) / weights.sum())
                first, end = int(bounds[start]), int(bounds[i])
                segments.append(Segment(times[first], times[end], first, end, c, str(class_names[c]),
                                        str(body_parts[c]), score))
            start = i
    segments.sort(key=lambda s: (s.first_frame, s.class_id))
    return segments


def labels_of(label_space) -> tuple[list[str], list[str]]:
    """(class names, body part of each class) of a ``LabelSpace``, as ``merge_segments`` takes them."""
    return (list(label_space.classes),
            [label_space.coarse_classes[g] for g in label_space.fine_to_coarse])


# --- evaluation --------------------------------------------------------------------------------------


def _span(item: Any, where: str) -> tuple[int, int, int]:
    """(class, first, end) of a Segment or a (class, first frame, end frame) tuple."""
    if isinstance(item, Segment):
        return item.class_id, item.first_frame, item.end_frame
    try:
        c, first, end = item[:3]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a Segment or (class, first frame, end frame), got {item!r:.100}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (c, first, end)):
        raise ValueError(f"{where}: class, first and end frame must be integers, got {item!r:.100}")
    if not 0 <= first < end:
        raise ValueError(f"{where}: frames {first}..{end} are no segment (need 0 <= first < end)")
    return int(c), int(first), int(end)


def frame_labels(segments: Iterable[Any], num_frames: int) -> np.ndarray:
    """int64 [num_frames]: each frame's class from ``segments`` (Segments or (class, first, end) tuples,
    frames as ``Segment.first_frame`` / ``end_frame`` count them), ``NONE`` (-1) where none lies.

    Refused (``ValueError``): a segment reaching past ``num_frames``, two segments over one frame
    (a frame of a single-label timeline has one class; score a multi-label one with ``segment_f1``).
    """
    out = np.full(int(num_frames), NONE, dtype=np.int64)
    for n, item in enumerate(segments):
        c, first, end = _span(item, f"segment {n}")
        if end > num_frames:
            raise ValueError(f"segment {n} ends at frame {end}, past the video's {num_frames} frames")
        if np.any(out[first:end] != NONE):
            raise ValueError(f"segment {n} (frames {first}..{end - 1}) overlaps another: "
                             f"frame labels need non-overlapping segments")
        out[first:end] = c
    return out


def frame_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """The share of frames whose predicted label equals the true one; "no action" (-1) is a label like
    any other. Refused: arrays of different lengths, or empty."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape or predicted.ndim != 1 or len(truth) == 0:
        raise ValueError(f"frame labels must be two 1-D arrays of one length (> 0), got {predicted.shape} "
                         f"and {truth.shape}")
    return float(np.mean(predicted == truth))


def segment_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of frame ranges [first, end)."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


@dataclass(frozen=True)
class SegmentScores:
    """Matched predictions (``tp``), unmatched ones (``fp``), unmatched true segments (``fn``), and
    precision = tp / predictions (0 with none), recall = tp / true segments (0 with none),
    f1 = 2 tp / (predictions + true segments) (1 when both lists are empty: nothing missed, nothing
    claimed), ``matches`` as (prediction, true segment, IoU) positions in the lists given."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    matches: tuple[tuple[int, int, float], ...]


def segment_f1(predicted: Sequence[Any], truth: Sequence[Any], iou: float = 0.5) -> SegmentScores:
    """Segment-level precision, recall and F1: a prediction counts when it is matched to a true
    segment of its class with an IoU of at least ``iou``.

    Matching is greedy and one-to-one: among all pairs of the same class at or above ``iou``, the
    pair of highest IoU is matched first (ties: the earlier prediction, then the earlier true
    segment), then the highest among the pairs whose members are both still free, and so on. Items
    are Segments or (class, first frame, end frame) tuples.
    """
    if isinstance(iou, bool) or not isinstance(iou, (int, float)) or not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou!r}")
    pred = [_span(p, f"predicted[{i}]") for i, p in enumerate(predicted)]
    true = [_span(t, f"truth[{j}]") for j, t in enumerate(truth)]
    pairs = []
    for i, (pc, pa, pb) in enumerate(pred):
        for j, (tc, ta, tb) in enumerate(true):
            if pc == tc:
                value = segment_iou((pa, pb), (ta, tb))
                if value >= iou:
                    pairs.append((-value, i, j))
    pairs.sort()
    used_pred: set[int] = set()
    used_true: set[int] = set()
    matches = []
    for neg, i, j in pairs:
        if i not in used_pred and j not in used_true:
            used_pred.add(i)
            used_true.add(j)
            matches.append((i, j, -neg))
    tp = len(matches)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(true) if true else 0.0
    f1 = 2 * tp / (len(pred) + len(true)) if pred or true else 1.0
    return SegmentScores(tp, len(pred) - tp, len(true) - tp, precision, recall, f1, tuple(matches))


# --- files --------------------------------------------------------------------------------------------

TIMELINE_FORMAT = "microaction-timeline"
TIMELINE_VERSION = 1
CSV_COLUMNS = ("video", *_SEGMENT_TYPES)


def write_timeline(
    path_json: str | Path | None,
    path_csv: str | Path | None,
    segments_by_video: Mapping[str, Sequence[Segment]],
    info: Mapping[str, Any] | None = None,
) -> None:
    """Write the segments of each video as JSON and/or CSV (a path None skips that file), each file
    whole or not at all (``atomic_open``).

    JSON: ``{"format": "microaction-timeline", "version": 1, "info": {...}, "videos": {name:
    [segment, ...]}}`` with ``Segment.to_dict`` entries; ``info`` (JSON-able: the settings, the
    checkpoint) is stored as given. CSV: one row per segment with the columns ``CSV_COLUMNS``; a
    video without segments has no row there (the JSON lists it with an empty list).
    """
    videos = {str(name): [s.to_dict() for s in segments] for name, segments in segments_by_video.items()}
    if path_json is not None:
        text = json.dumps({"format": TIMELINE_FORMAT, "version": TIMELINE_VERSION, "info": dict(info or {}),
                           "videos": videos}, indent=1, allow_nan=False)
        with atomic_open(path_json) as f:
            f.write(text + "\n")
    if path_csv is not None:
        with atomic_open(path_csv, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for name, rows in videos.items():
                for row in rows:
                    writer.writerow({"video": name, **row})


def read_timeline(path_json: str | Path) -> dict[str, list[Segment]]:
    """The segments by video of a file ``write_timeline`` wrote; anything else is a ``ValueError``
    naming the file and the key."""
    path = Path(path_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable timeline ({type(err).__name__}: {err})") from err
    if not isinstance(data, dict) or data.get("format") != TIMELINE_FORMAT:
        raise ValueError(f"{path}: not a timeline file (expected \"format\": \"{TIMELINE_FORMAT}\")")
    if data.get("version") != TIMELINE_VERSION:
        raise ValueError(f"{path}: timeline version {data.get('version')!r}, this reader knows {TIMELINE_VERSION}")
    videos = data.get("videos")
    if not isinstance(videos, dict):
        raise ValueError(f"{path}: \"videos\" must be an object of video name -> segment list")
    out = {}
    for name, items in videos.items():
        if not isinstance(items, list):
            raise ValueError(f"{path}: videos[{name!r}] must be a list of segments")
        out[name] = [_segment_from(s, f"{path}: videos[{name!r}][{i}]") for i, s in enumerate(items)]
    return out


def read_timeline_csv(path_csv: str | Path) -> dict[str, list[Segment]]:
    """The segments by video of a CSV ``write_timeline`` wrote (videos without segments are absent);
    a missing column or a value of the wrong kind is a ``ValueError`` naming the file and line."""
    path = Path(path_csv)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable timeline ({type(err).__name__}: {err})") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or list(reader.fieldnames) != list(CSV_COLUMNS):
        raise ValueError(f"{path}: expected the columns {','.join(CSV_COLUMNS)}, got {reader.fieldnames}")
    out: dict[str, list[Segment]] = {}
    for row in reader:
        where = f"{path}, line {reader.line_num}"
        values: dict[str, Any] = {}
        for key, kinds in _SEGMENT_TYPES.items():
            text_value = row[key]
            parse = kinds[-1]  # str, int, or float (which also reads an int)
            if text_value is None:
                raise ValueError(f"{where}: no {key} (the row has {len(CSV_COLUMNS) - list(row.values()).count(None)}"
                                 f" of {len(CSV_COLUMNS)} columns)")
            try:
                values[key] = parse(text_value)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: {key} must be {parse.__name__}, got {text_value!r}") from None
        out.setdefault(row["video"], []).append(_segment_from(values, where))
    return out


# --- the picture -----------------------------------------------------------------------------------

_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
_DPI = 100


def class_colour(class_id: int) -> tuple[float, float, float]:
    """A fixed colour per class id (60 distinct ones: matplotlib's tab20, tab20b and tab20c), so one
    action has one colour in every picture."""
    from matplotlib import colormaps

    colours = [*colormaps["tab20"].colors, *colormaps["tab20b"].colors, *colormaps["tab20c"].colors]
    return tuple(colours[class_id % len(colours)])[:3]


def clock(seconds: float) -> str:
    """mm:ss, or h:mm:ss from one hour on."""
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def figure_width(duration_s: float) -> float:
    """Inches: 8 up to about 3 minutes, 1.4 more per minute beyond, at most 24 (a 10-minute video: 18)."""
    return float(min(24.0, max(8.0, 4.0 + 1.4 * duration_s / 60)))


def tick_step(duration_s: float, width_in: float) -> int:
    """Seconds between x ticks: the smallest of 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30, 60 min that
    leaves at least 0.8 inch between ticks (a 10-minute video at 18 inches: 30 s)."""
    for step in _TICK_STEPS_S:
        if duration_s / step <= width_in / 0.8:
            return step
    return _TICK_STEPS_S[-1]


def timeline_figure(segments: Sequence[Segment], duration_s: float, body_parts: Sequence[str],
                    title: str | None = None):
    """The timeline as a matplotlib ``Figure`` (not attached to pyplot): one row per body part, the
    first on top; each segment a bar in its action's ``class_colour``; a legend of the actions
    present (by class id) below; x in mm:ss with ticks every ``tick_step``. Refused (``ValueError``):
    a segment whose body part is not a row, a duration that is not positive."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    duration_s = _positive(duration_s, "duration_s", "a positive number of seconds")
    rows = {name: i for i, name in enumerate(body_parts)}
    for n, s in enumerate(segments):
        if s.body_part not in rows:
            raise ValueError(f"segment {n} ({s.class_name}) is on body part {s.body_part!r}, which is no row "
                             f"(rows: {list(body_parts)})")
    present = {s.class_id: s.class_name for s in segments}
    width = figure_width(duration_s)
    columns = max(1, int(width // 3.2))
    legend_rows = math.ceil(len(present) / columns)
    height = 1.1 + 0.45 * len(rows) + 0.27 * legend_rows + (0.3 if title else 0.0)
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    top = len(rows) - 1
    for s in segments:
        ax.broken_barh([(s.start_s, s.end_s - s.start_s)], (top - rows[s.body_part] - 0.38, 0.76),
                       facecolors=class_colour(s.class_id), edgecolor="none")
    ax.set_ylim(-0.5, len(rows) - 0.5)
    ax.set_yticks(range(len(rows)), list(reversed(list(rows))))
    ax.set_xlim(0, duration_s)
    ticks = np.arange(0.0, duration_s + 1e-9, tick_step(duration_s, width))
    ax.set_xticks(ticks, [clock(t) for t in ticks])
    ax.grid(axis="x", color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel("time (mm:ss)" if duration_s < 3600 else "time (h:mm:ss)")
    if title:
        ax.set_title(title)
    if present:
        handles = [Patch(facecolor=class_colour(c), label=present[c]) for c in sorted(present)]
        fig.legend(handles=handles, loc="outside lower center", ncol=columns, fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no micro-action above the threshold", transform=ax.transAxes, ha="center",
                va="center", color="0.4")
    return fig


def plot_timeline(segments: Sequence[Segment], duration_s: float, body_parts: Sequence[str],
                  path_png: str | Path, title: str | None = None) -> Path:
    """Draw ``timeline_figure`` to a PNG at ``path_png`` (written to a temporary name, then renamed)."""
    fig = timeline_figure(segments, duration_s, body_parts, title)
    return save_figure(fig, path_png)
