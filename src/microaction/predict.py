"""predict.py's job: a trained checkpoint run on one's own videos.

``predict(cfg)`` reads the checkpoint (``pipeline.load_task``: weights_only, registered classes only),
finds the videos of ``input`` (a video file, a folder searched recursively, or a list file) and writes,
in the run folder:

- recognition checkpoints (one action per clip, MA-52): a video no longer than one window is
  classified whole, T frames over all of it as evaluation samples a clip; a longer one is cut into
  windows (``timeline.plan_windows``), each classified, and the windows merged into segments
  (``timeline.merge_segments``). ``predictions.csv`` has one row per window (the top-k actions with
  names, body parts and probabilities), ``timeline.json`` / ``timeline.csv`` the segments of every
  video, ``timelines/<video>.png`` each video's timeline picture;
- emotion checkpoints (MA-52-Pro): T frames over the whole video, as the model is trained; the body
  clip and a face clip (from a given face track, a face detector, or the whole frame, said per video)
  give the emotion distribution and the predicted action set: ``emotions.csv`` and
  ``emotions/<video>.png``;
- either: ``overlays/<video>.mp4`` with ``predict.overlay=true``; ``failed.csv`` (the videos that could
  not be read, and why); ``summary.json`` (counts, settings, files).

Frames are decoded as the evaluation loader decodes them (``read_frames`` / ``iter_window_frames``: the
same frame numbers and short side), cropped with the datamodules' evaluation transform
(``transforms.CenterCrop``; with test-time views, the checkpoint's ``data.test_views`` or
``predict.test_views``, each window's K temporal clips in 1 or 3 crops, the outputs averaged as evaluation
averages them: ``tasks.views.forward_views``) and normalised on the device (``transforms.normalize``). Long videos are
streamed: one forward decode, holding only the frames of the windows in flight. Windows of several
videos share a batch (``predict.batch_size``).

Each finished video's results go to ``per_video/<video>.json`` (written whole or not at all) before the
next video's files; the tables are assembled from those at the end. A rerun in the same run folder
(``hydra.run.dir=...``) therefore skips the videos whose results are complete, and predicts the rest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from . import reports
from .data.faces import FaceTrack, FaceTrackError, FaceTrackMissingError, crop_faces, read_track, write_track
from .data.ma52pro import body_frames, decode_short_side
from .data.recipes import recipe_problems, views_of
from .data.sampling import view_indices
from .data.transforms import CenterCrop, eval_crop, normalize, view_clips
from .data.video import DecodeError, probe, read_frames
from .overlay import cell_probabilities, overlay_short_side, write_overlay
from .tasks import EmotionRecognition, MicroActionRecognition
from .tasks.views import forward_views
from .timeline import (
    DEFAULT_STRIDE_S,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_S,
    Segment,
    Window,
    clock,
    iter_window_frames,
    labels_of,
    merge_segments,
    plan_windows,
    plot_timeline,
    write_timeline,
)
from .utils.atomic import atomic_open, save_figure, write_text_atomic
from .utils.checks import ConfigError

log = logging.getLogger(__name__)

# What a folder is searched for (case-insensitive); a list file or a single video may name any file.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
# An input file with one of these endings is a list of videos, anything else a video.
LIST_EXTENSIONS = (".txt", ".list", ".lst")
FACE_DETECTORS = ("auto", "haar", "mtcnn", "none")
PER_VIDEO_FORMAT = "microaction-predict-video"
PER_VIDEO_VERSION = 1
# overlay text: the actions shown per frame
OVERLAY_TOP = 3


class PredictError(ValueError):
    """Input predict.py cannot use (a path, a list line, a checkpoint, a run folder); names it."""


# --- the videos of the input -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoItem:
    """One video to predict: ``id`` (its path relative to the input folder or the list file's folder, POSIX
    separators; a single file's name), ``path`` (on disk) and ``where`` (the file, or list file and line,
    for messages)."""

    id: str
    path: Path
    where: str


def is_video_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def find_videos(source: str | Path, exclude: str | Path | None = None) -> list[VideoItem]:
    """The videos ``source`` names: a folder (every file with a ``VIDEO_EXTENSIONS`` ending below it, names
    starting with "." left out, sorted by relative path), a list file (``LIST_EXTENSIONS``: see
    ``read_video_list``) or one video file (any other file). Files under ``exclude`` (the run folder,
    which holds overlay videos) are left out.

    Refused (``PredictError`` naming the path): a path that does not exist, a folder without videos.
    """
    if source in (None, ""):
        raise PredictError("input: missing; give a video file, a folder of videos or a list file, e.g. input=clip.mp4")
    path = Path(str(source)).expanduser()
    if not path.exists():
        raise PredictError(f"input={source}: no such file or folder")
    if path.is_dir():
        skip = Path(exclude).resolve() if exclude is not None else None
        items = []
        for file in sorted(p for p in path.rglob("*") if p.is_file() and is_video_name(p)):
            rel = file.relative_to(path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if skip is not None and file.resolve().is_relative_to(skip):
                continue
            items.append(VideoItem(rel.as_posix(), file, str(file)))
        if not items:
            raise PredictError(f"input={source}: no video files in this folder or below it (looked for "
                               f"{', '.join(VIDEO_EXTENSIONS)}, any case)")
        return items
    if path.suffix.lower() in LIST_EXTENSIONS:
        return read_video_list(path)
    return [VideoItem(path.name, path, str(path))]


def read_video_list(path: str | Path) -> list[VideoItem]:
    """The videos a list file names: one path per line, relative to the list file's folder (or absolute);
    blank lines and lines starting with "#" are ignored. Refused (``PredictError`` naming the file and
    line), before any video is read: a file that is not UTF-8 text, a listed path that is not a file, a
    video listed twice, a list without videos."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise PredictError(f"input={path}: not a text file ({err.reason} at byte {err.start}); a list file holds "
                           "one video path per line") from None
    base = path.parent
    items: list[VideoItem] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        listed = Path(entry).expanduser()
        file = listed if listed.is_absolute() else base / listed
        where = f"{path}:{lineno} ({entry})"
        if not file.is_file():
            what = "is a folder" if file.is_dir() else "no such file"
            raise PredictError(f"{path}:{lineno}: {entry}: {what} (paths are relative to the list file's folder "
                               f"{base}); expected a video file")
        video_id = _list_id(listed, base)
        if video_id in seen:
            raise PredictError(f"{path}:{lineno}: {entry} is listed twice (first on line {seen[video_id]})")
        seen[video_id] = lineno
        items.append(VideoItem(video_id, file, where))
    if not items:
        raise PredictError(f"input={path}: the list names no video (one path per line; '#' starts a comment)")
    return items


def _list_id(listed: Path, base: Path) -> str:
    """A list entry's id: its path relative to the list's folder, normalised; an absolute path or one
    leading out of that folder keeps its absolute form."""
    full = (listed if listed.is_absolute() else base / listed).resolve()
    try:
        return full.relative_to(base.resolve()).as_posix()
    except ValueError:
        return full.as_posix()


def output_names(ids: Sequence[str]) -> dict[str, str]:
    """The name each video's files get (``timelines/<name>.png``, ``per_video/<name>.json``, ...): its id
    without the extension (``sub/clip.mp4`` -> ``sub/clip``), or the whole id where two ids would share a
    name (``clip.mp4`` and ``clip.mov`` -> ``clip.mp4``, ``clip.mov``). Absolute ids (list entries outside
    the list's folder) lose their root, ``..`` parts become ``__``."""

    def clean(text: str) -> str:
        parts = [("__" if p == ".." else p) for p in PurePosixPath(text).parts if p not in ("/", ".")]
        return "/".join(parts) or "video"

    stems = {i: clean(str(PurePosixPath(i).with_suffix(""))) for i in ids}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {i: (stem if counts[stem] == 1 else clean(i)) for i, stem in stems.items()}


# --- settings ------------------------------------------------------------------------------------------------------


@dataclass
class PredictSettings:
    """The ``predict.*`` settings, checked (``from_config``), defaults filled in."""

    window_s: float = DEFAULT_WINDOW_S
    stride_s: float = DEFAULT_STRIDE_S
    batch_size: int = 16
    top_k: int = 5
    threshold: float = DEFAULT_THRESHOLD
    action_threshold: float = reports.ACTION_THRESHOLD
    faces: Path | None = None
    face_detector: str = "auto"
    overlay: bool = False
    overlay_short_side: int | None = 480
    device: str = "auto"
    decode_threads: int = 1
    resume: bool = True
    progress: bool = True
    # test-time views given on the command line (``predict.test_views.*``); None: the checkpoint's
    test_views: dict | None = None

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None) -> PredictSettings:
        """Settings from ``cfg.predict``; every bad value is named with its key (``ConfigError``), and an
        unknown key too, before any work."""
        values = dict(values or {})
        defaults = cls()
        problems: list[str] = []
        known = set(cls.__dataclass_fields__)
        for key in sorted(set(values) - known):
            problems.append(f"predict.{key}: not a setting of predict.py (its settings: {', '.join(sorted(known))})")

        def get(key: str) -> Any:
            value = values.get(key)
            return getattr(defaults, key) if value is None and key not in ("faces", "overlay_short_side") else value

        def integer(key: str, low: int) -> int:
            value = get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"predict.{key}={value!r}: expected an integer >= {low}")
                return getattr(defaults, key)
            return int(value)

        def probability(key: str) -> float:
            value = get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                problems.append(f"predict.{key}={value!r}: expected a probability in 0..1")
                return getattr(defaults, key)
            return float(value)

        def flag(key: str) -> bool:
            value = get(key)
            if not isinstance(value, bool):
                problems.append(f"predict.{key}={value!r}: expected true or false")
                return getattr(defaults, key)
            return value

        out = cls(
            window_s=get("window_s"), stride_s=get("stride_s"), batch_size=integer("batch_size", 1),
            top_k=integer("top_k", 1), threshold=probability("threshold"),
            action_threshold=probability("action_threshold"), overlay=flag("overlay"),
            decode_threads=integer("decode_threads", 1), resume=flag("resume"), progress=flag("progress"),
            device=str(get("device")),
        )
        try:  # the window plan's own checks, with its messages (they name predict.window_s / stride_s)
            plan_windows(1, 1.0, out.window_s, out.stride_s)
            out.window_s, out.stride_s = float(out.window_s), float(out.stride_s)
        except ValueError as err:
            problems.append(str(err))
        faces = values.get("faces")
        if faces not in (None, ""):
            out.faces = Path(str(faces)).expanduser()
            if not out.faces.is_dir():
                problems.append(f"predict.faces={faces}: no such folder; expected a folder of face tracks "
                                "(<faces>/<video path relative to the input, suffix .csv>)")
        detector = get("face_detector")
        if detector not in FACE_DETECTORS:
            problems.append(f"predict.face_detector={detector!r}: expected one of {', '.join(FACE_DETECTORS)}")
        else:
            out.face_detector = detector
        side = values.get("overlay_short_side", defaults.overlay_short_side)
        if side is not None and (isinstance(side, bool) or not isinstance(side, int) or side < 16):
            problems.append(f"predict.overlay_short_side={side!r}: expected an integer >= 16 (pixels) or null")
        else:
            out.overlay_short_side = side
        try:
            resolve_device(out.device)
        except ValueError as err:
            problems.append(str(err))
        views = values.get("test_views")
        if views is not None:
            given = {k: v for k, v in views.items() if v is not None} if isinstance(views, Mapping) else views
            if given:
                view_problems = recipe_problems({"test_views": given}, prefix="predict.")
                problems.extend(view_problems)
                if not view_problems:
                    out.test_views = views_of(given)
        if problems:
            raise ConfigError(problems)
        return out


def resolve_device(setting: str) -> torch.device:
    """``auto``: the first CUDA GPU when torch sees one, else the CPU; otherwise the device named
    (``cpu``, ``cuda``, ``cuda:1``, ``mps``), refused when it is not there."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(setting)
    except (RuntimeError, ValueError):
        raise ValueError(f"predict.device={setting!r}: expected auto, cpu, cuda, cuda:<index> or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"predict.device={setting}: torch sees no CUDA GPU here; use predict.device=auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"predict.device={setting}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"predict.device={setting}: torch sees no Apple GPU (MPS) here; use predict.device=auto")
    return device


@dataclass(frozen=True)
class ClipSettings:
    """How a checkpoint's network sees a video, from the data settings stored with it: T frames
    (``num_segments``, the network's), scaled to ``short_side`` while decoding, centre-cropped to
    ``input_size``; the emotion task's face clips: ``face_size`` pixels, ``face_margin``, ``align_faces``, cut
    from frames at ``face_short_side`` (None: ``short_side``; when larger, the frames are decoded at it and
    scaled down for the body clip, as ``MA52ProDataset`` does).
    A setting the checkpoint does not store takes the default of the datamodule class it names."""

    num_segments: int
    input_size: Any
    short_side: int | None
    face_size: int = 112
    face_margin: float = 0.25
    align_faces: bool = True
    face_short_side: int | None = None
    # test-time views: temporal clips per window, spatial crops (1 or 3), how their outputs are averaged
    clips: int = 1
    crops: int = 1
    average: str = "logits"

    @classmethod
    def of(cls, task: torch.nn.Module, dm_cls: type | None, stored: Mapping[str, Any],
           test_views: Mapping[str, Any] | None = None) -> ClipSettings:
        import inspect

        from .data.datamodule import MA52DataModule
        from .data.ma52pro import MA52ProDataModule

        if dm_cls is None:
            dm_cls = MA52ProDataModule if isinstance(task, EmotionRecognition) else MA52DataModule
        params = inspect.signature(dm_cls.__init__).parameters

        def value(key: str, fallback: Any = None) -> Any:
            if key in stored:
                return stored[key]
            return params[key].default if key in params else fallback

        frames = getattr(task, "num_segments", None) or value("num_segments")
        views = views_of(test_views if test_views is not None else value("test_views"))
        return cls(int(frames), value("input_size"), value("short_side"), int(value("face_size", 112)),
                   float(value("face_margin", 0.25)), bool(value("align_faces", True)), value("face_short_side"),
                   int(views["clips"]), int(views["crops"]), str(views["average"]))

    @property
    def views(self) -> int:
        """Views per window: temporal clips x spatial crops (1: the evaluation's single centre clip)."""
        return self.clips * self.crops

    def indices(self, window: Window) -> np.ndarray:
        """The frames of ``window`` the network sees, as the evaluation loader samples a clip: the centre of each
        of T segments, or with several temporal clips every clip's T frames one after the other
        (``sampling.view_indices``)."""
        return window.first + view_indices(window.num_frames, self.num_segments, self.clips)

    @property
    def decode_short_side(self) -> int | None:
        """The short side frames are decoded at (the emotion task's: the larger of body and face)."""
        return decode_short_side(self.short_side, self.face_short_side)

    def clip(self, frames: np.ndarray) -> torch.Tensor:
        """Decoded frames (uint8 [T, H, W, 3]) as the evaluation loader delivers them: uint8 [T, 3, h, w],
        scaled to ``short_side`` if they were decoded larger, centre-cropped to ``input_size`` (the
        datamodules' evaluation transform)."""
        clip = body_frames(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2), self.short_side)
        if self.views == 1:
            return CenterCrop(self.input_size)(clip)
        # the evaluation's views, [clips x crops, T, 3, h, w], cut as the dataset cuts them
        return view_clips(clip, self.num_segments, eval_crop(self.input_size, self.crops))


def task_kind(task: torch.nn.Module, ckpt_path: str) -> str:
    """``recognition`` or ``emotion``; any other task is refused, naming the checkpoint."""
    if isinstance(task, EmotionRecognition):
        return "emotion"
    if isinstance(task, MicroActionRecognition):
        return "recognition"
    raise PredictError(f"ckpt_path={ckpt_path}: its task {type(task).__name__} is not one predict.py runs "
                       "(it runs the recognition and emotion tasks)")


# --- one video in flight -------------------------------------------------------------------------------------------


@dataclass
class _Video:
    """A video being predicted: its units (windows, or the whole video) with their network inputs, the
    outputs gathered so far, and what its job needs to finish it."""

    item: VideoItem
    name: str
    units: Iterator[tuple[int, dict[str, torch.Tensor]]] = field(default_factory=lambda: iter(()))
    expected: int = 0
    outputs: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    decoded: bool = False
    failed: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.decoded and not self.failed and len(self.outputs) == self.expected


class _Job:
    """What differs between the tasks: how a video becomes units of network input (``start``), what the
    network gives for a batch (``forward``), what a finished video writes (``finish``) and the tables
    assembled from the finished videos' records (``assemble``)."""

    kind = ""

    def __init__(self, task, clip: ClipSettings, settings: PredictSettings, out_dir: Path, device: torch.device,
                 fingerprint: dict):
        self.task, self.clip, self.settings, self.out_dir, self.device = task, clip, settings, out_dir, device
        self.fingerprint = fingerprint
        self.space = task.label_space
        self.classes, self.bodies = labels_of(self.space)

    def start(self, video: _Video) -> None:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def finish(self, video: _Video) -> dict:
        raise NotImplementedError

    def assemble(self, records: Iterable[dict]) -> dict[str, str]:
        """Write the tables from the finished videos' records (read one at a time); returns the files."""
        raise NotImplementedError

    def needed_files(self, record: dict) -> list[str]:
        """The files (relative to the run folder) a complete record of this job has."""
        return [f for f in record.get("files", {}).values() if f]

    def _overlay(self, video: _Video, lines_at) -> str:
        info = video.facts["info"]
        rel = f"overlays/{video.name}.mp4"
        side = overlay_short_side(info["width"], info["height"], self.settings.overlay_short_side)
        write_overlay(video.item.path, self.out_dir / rel, lines_at, info["frames"], info["fps"], side,
                      self.settings.decode_threads)
        return rel

    def _probe(self, video: _Video) -> dict:
        info = probe(video.item.path)
        if info.frames < 1:
            raise DecodeError(video.item.path, "the video stream holds no frames")
        if not info.fps > 0:
            raise DecodeError(video.item.path, "the video stream gives no frame rate (needed for the times)")
        facts = {"frames": info.frames, "fps": info.fps, "duration_s": info.frames / info.fps, "width": info.width,
                 "height": info.height}
        video.facts["info"] = facts
        return facts

    def _record(self, video: _Video, **fields: Any) -> dict:
        return {"format": PER_VIDEO_FORMAT, "version": PER_VIDEO_VERSION, "video": video.item.id,
                "path": str(video.item.path), "settings": self.fingerprint, "task": self.kind,
                **video.facts["info"], **fields}


class _RecognitionJob(_Job):
    """Windows of T frames, each classified (softmax over the fine classes), merged into segments."""

    kind = "recognition"

    def start(self, video: _Video) -> None:
        info = self._probe(video)
        s = self.settings
        windows = plan_windows(info["frames"], info["fps"], s.window_s, s.stride_s)
        indices = [self.clip.indices(w) for w in windows]
        if windows[0].whole:
            log.info("%s: %.2f s, shorter than one window (%g s): classified whole, %d frames over the whole video",
                     video.item.id, info["duration_s"], s.window_s, self.clip.num_segments)
        else:
            log.info("%s: %s, %d frames at %.3g fps: %d windows of %g s every %g s", video.item.id,
                     clock(info["duration_s"]), info["frames"], info["fps"], len(windows), s.window_s, s.stride_s)
        video.facts["windows"] = windows
        video.expected = len(windows)
        frames = iter_window_frames(video.item.path, windows, indices, self.clip.short_side, s.decode_threads)
        video.units = ((w.index, {"video": self.clip.clip(f)}) for w, f in frames)

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        clips = normalize(batch["video"].to(self.device, non_blocking=True))
        # with test-time views [N, V, T, 3, H, W]: the views' outputs averaged per window, as in evaluation
        logits = forward_views(self.task, clips, self.clip.average)["logits"].float()
        return {"probs": logits.softmax(1).cpu().numpy()}

    def finish(self, video: _Video) -> dict:
        windows: list[Window] = video.facts["windows"]
        info = video.facts["info"]
        probs = np.stack([video.outputs[w.index]["probs"] for w in windows]).astype(np.float64)
        segments = merge_segments(windows, probs, self.classes, self.bodies, self.settings.threshold)
        files = {"timeline": f"timelines/{video.name}.png"}
        plot_timeline(segments, info["duration_s"], list(self.space.coarse_classes), self.out_dir / files["timeline"],
                      title=video.item.id)
        if self.settings.overlay:
            files["overlay"] = self._overlay(video, self._lines(windows, probs, info["fps"]))
        return self._record(
            video, whole=windows[0].whole,
            windows=[{"index": w.index, "first": w.first, "end": w.end, "start_s": w.start_s, "end_s": w.end_s,
                      "whole": w.whole} for w in windows],
            probs=probs.tolist(), segments=[s.to_dict() for s in segments], files=files)

    def _lines(self, windows: Sequence[Window], probs: np.ndarray, fps: float):
        """The overlay's text at frame k: the time, then the top actions of the windows covering k
        (their probabilities averaged, as the timeline's cells)."""
        bounds, cells = cell_probabilities([w.first for w in windows], [w.end for w in windows], probs)
        cache: dict[int, list[str]] = {}

        def lines_at(k: int) -> list[str]:
            cell = int(np.clip(np.searchsorted(bounds, k, side="right") - 1, 0, len(cells) - 1))
            if cell not in cache:
                top = np.argsort(-cells[cell], kind="stable")[:OVERLAY_TOP]
                cache[cell] = [f"{self.classes[c]} ({self.bodies[c]}) {cells[cell][c]:.2f}" for c in top]
            return [f"{k / fps:.1f} s", *cache[cell]]

        return lines_at

    def assemble(self, records: Iterable[dict]) -> dict[str, str]:
        k = min(self.settings.top_k, len(self.classes))
        segments: dict[str, list[Segment]] = {}
        durations: dict[str, float] = {}
        path = self.out_dir / "predictions.csv"
        with atomic_open(path, newline="") as f:
            import csv

            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(prediction_columns(k))
            for record in records:
                segments[record["video"]] = [Segment(**s) for s in record["segments"]]
                durations[record["video"]] = record["duration_s"]
                for window, p in zip(record["windows"], record["probs"]):
                    p = np.asarray(p)
                    top = np.argsort(-p, kind="stable")[:k]
                    row = [record["video"], window["index"], f"{window['start_s']:.3f}", f"{window['end_s']:.3f}",
                           window["first"], window["end"], int(window["whole"])]
                    for c in top:
                        row += [int(c), self.classes[c], self.bodies[c], f"{p[c]:.6f}"]
                    writer.writerow(row)
        info = {"checkpoint": self.fingerprint["checkpoint"], "window_s": self.settings.window_s,
                "stride_s": self.settings.stride_s, "threshold": self.settings.threshold, "duration_s": durations}
        write_timeline(self.out_dir / "timeline.json", self.out_dir / "timeline.csv", segments, info)
        return {"predictions": "predictions.csv", "timeline_json": "timeline.json", "timeline_csv": "timeline.csv"}


def prediction_columns(top_k: int) -> list[str]:
    """``predictions.csv``'s header: the window, then id, name, body part and probability of each of the
    ``top_k`` most probable actions."""
    columns = ["video", "window", "start_s", "end_s", "first_frame", "end_frame", "whole"]
    for i in range(1, top_k + 1):
        columns += [f"top{i}_id", f"top{i}_name", f"top{i}_body", f"top{i}_prob"]
    return columns


class _EmotionJob(_Job):
    """T frames over the whole video (the body clip) and their face crops: the emotion distribution
    (softmax) and the multi-label actions (sigmoid) of each video."""

    kind = "emotion"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.emotions = list(self.task.emotions)
        self.kept = self.task.kept_actions.tolist()
        self.detector = None
        self.no_detector = ""
        s = self.settings
        if not self.task.uses_face:
            if s.faces is not None:
                log.warning("predict.faces=%s is not used: this checkpoint has no face branch (branches=%s)",
                            s.faces, self.task.hparams["branches"])
        elif s.faces is None and s.face_detector != "none":
            from .data.face_detection import DetectorUnavailable, make_detector

            try:
                self.detector = make_detector("haar" if s.face_detector == "auto" else s.face_detector)
            except DetectorUnavailable as err:
                if s.face_detector != "auto":
                    raise PredictError(f"predict.face_detector={s.face_detector}: {err}") from None
                self.no_detector = f"no face detector: {err}"
                log.warning("face clips are whole frames: %s", self.no_detector)
        elif s.face_detector == "none":
            self.no_detector = "predict.face_detector=none"

    def start(self, video: _Video) -> None:
        info = self._probe(video)
        chosen: dict[str, np.ndarray] = {}
        partial: list[str] = []
        t = self.clip.num_segments

        def choose(n: int) -> np.ndarray:
            from .data.sampling import segment_indices

            chosen["indices"] = segment_indices(n, t, False)
            return chosen["indices"]

        frames = read_frames(video.item.path, choose, self.clip.decode_short_side, self.settings.decode_threads,
                             num_frames=info["frames"],
                             on_partial=lambda packets, decoded: partial.append(
                                 f"decoded {decoded} of {packets} frames; sampled within those"))
        indices = chosen["indices"]
        if partial:
            log.warning("%s: partly decodable, %s", video.item.id, partial[0])
        log.info("%s: %.1f s, %d frames over the whole video", video.item.id, info["duration_s"], t)
        inputs = {"video": self.clip.clip(frames)}
        face = {"face_source": "not used", "face_detail": f"branches={self.task.hparams['branches']}"}
        if self.task.uses_face:
            track, face = self._face_track(video, frames, indices, info["frames"])
            crops = crop_faces(frames, track, indices, self.clip.face_size, align=self.clip.align_faces,
                               margin=self.clip.face_margin)
            inputs["face"] = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
            log.info("%s: face clip: %s (%s)", video.item.id, face["face_source"], face["face_detail"])
        video.facts.update(indices=[int(i) for i in indices], partial=partial[0] if partial else "", **face)
        video.expected = 1
        video.units = iter([(0, inputs)])

    def _face_track(self, video: _Video, frames: np.ndarray, indices: np.ndarray,
                    num_frames: int) -> tuple[FaceTrack, dict[str, str]]:
        """The video's face track and where it came from: the track file of ``predict.faces``, the
        detector's faces on the sampled frames (written to ``faces/<video>.csv``), or none (the whole
        frame)."""
        s = self.settings
        if s.faces is not None:
            path = s.faces / PurePosixPath(video.item.id).with_suffix(".csv")
            track = read_track(path, num_frames)
            if not track.found:
                return track, {"face_source": "whole_frame", "face_detail": f"the track {path} holds no face"}
            return track, {"face_source": "track", "face_detail": str(path)}
        if self.detector is None:
            return _no_face(num_frames), {"face_source": "whole_frame", "face_detail": self.no_detector}
        from .data.face_detection import face_row

        rows, seen = [], set()
        for k, rgb in zip(indices.tolist(), frames):
            if k in seen:  # a video shorter than T frames repeats frames
                continue
            seen.add(k)
            row = face_row(self.detector, k, rgb, bool(self.detector.landmarks))
            if row is not None:
                rows.append(row)
        rel = f"faces/{video.name}.csv"
        write_track(self.out_dir / rel, rows, landmarks=bool(self.detector.landmarks))
        track = read_track(self.out_dir / rel, num_frames)
        if not rows:
            return track, {"face_source": "whole_frame",
                           "face_detail": f"{self.detector.name} found no face in the {len(seen)} sampled frames"}
        return track, {"face_source": "detected",
                       "face_detail": f"{self.detector.name}: a face in {len(rows)} of {len(seen)} sampled frames, "
                                      f"track in {rel}"}

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        video = normalize(batch["video"].to(self.device, non_blocking=True))
        face = normalize(batch["face"].to(self.device, non_blocking=True)) if "face" in batch else None
        out = self.task(video, face)
        result = {"emotion": out["emotion"].float().softmax(1).cpu().numpy()}
        if "actions" in out:
            actions = np.zeros((video.shape[0], len(self.classes)), np.float64)
            actions[:, self.kept] = out["actions"].float().sigmoid().cpu().numpy()
            result["actions"] = actions
        return result

    def action_set(self, action_prob: Sequence[float] | None) -> list[int]:
        """The predicted actions (class ids, ascending): those of the model's classes at or above
        ``predict.action_threshold``, at least the most probable (``reports.predicted_actions``)."""
        if action_prob is None:
            return []
        kept = np.asarray(action_prob, dtype=np.float64)[self.kept]
        return sorted(self.kept[i] for i in reports.predicted_actions(kept, self.settings.action_threshold))

    def finish(self, video: _Video) -> dict:
        out = video.outputs[0]
        emotion = out["emotion"].astype(np.float64)
        actions = out["actions"].astype(np.float64) if "actions" in out else None
        chosen = self.action_set(actions)
        files = {"figure": f"emotions/{video.name}.png"}
        emotion_figure(emotion, self.emotions, [(self.classes[c], float(actions[c])) for c in chosen],
                       self.out_dir / files["figure"], title=video.item.id)
        if self.settings.overlay:
            best = int(np.argmax(emotion))
            lines = [f"emotion: {self.emotions[best]} {emotion[best]:.2f}",
                     *(f"{self.classes[c]} {actions[c]:.2f}" for c in chosen[:OVERLAY_TOP])]
            files["overlay"] = self._overlay(video, lambda k: lines)
        return self._record(video, emotion_prob=emotion.tolist(),
                            action_prob=None if actions is None else actions.tolist(), actions=chosen,
                            indices=video.facts["indices"], partial=video.facts["partial"],
                            face_source=video.facts["face_source"], face_detail=video.facts["face_detail"],
                            files=files)

    def assemble(self, records: Iterable[dict]) -> dict[str, str]:
        import csv

        with atomic_open(self.out_dir / "emotions.csv", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(emotion_columns(self.emotions))
            for r in records:
                p = np.asarray(r["emotion_prob"])
                best = int(np.argmax(p))
                chosen = r["actions"]
                writer.writerow([
                    r["video"], f"{r['duration_s']:.3f}", r["frames"], r["partial"], r["face_source"], r["face_detail"],
                    best, self.emotions[best], *(f"{v:.6f}" for v in p),
                    " ".join(map(str, chosen)), "; ".join(self.classes[c] for c in chosen),
                    "; ".join(self.bodies[c] for c in chosen),
                    " ".join(f"{r['action_prob'][c]:.6f}" for c in chosen),
                ])
        return {"emotions": "emotions.csv"}


def emotion_columns(emotions: Sequence[str]) -> list[str]:
    """``emotions.csv``'s header: the video, where its face clip came from, the predicted emotion and every
    emotion's probability, the predicted action set (ids, names, body parts, probabilities)."""
    return ["video", "duration_s", "frames", "partial", "face_source", "face_detail", "pred_emotion",
            "pred_emotion_name", *[f"prob_{e}" for e in emotions], "pred_actions", "pred_action_names",
            "pred_action_bodies", "pred_action_probs"]


def _no_face(num_frames: int) -> FaceTrack:
    """A track without a face over ``num_frames`` frames: ``crop_faces`` then gives the whole frame."""
    n = max(1, num_frames)
    return FaceTrack(np.tile(np.array([0.0, 0.0, 1.0, 1.0]), (n, 1)), np.zeros(n, bool), np.zeros(n))


def emotion_figure(emotion: Sequence[float], names: Sequence[str], actions: Sequence[tuple[str, float]],
                   path: Path, title: str | None = None) -> Path:
    """A PNG of one video's emotion distribution (a bar per emotion) and its predicted actions with their
    probabilities listed beside it."""

    from matplotlib.figure import Figure

    lines = [f"{name}  {p:.2f}" for name, p in actions] or ["(no action head)"]
    # inches: the bars keep their size, the list of actions sets the height
    height = max(3.2, 1.0 + 0.15 * (len(lines) + 1))
    fig = Figure(figsize=(8, height), dpi=100)
    ax = fig.add_axes((0.08, (height - 2.8) / height, 0.42, 2.0 / height))
    bars = ax.bar(range(len(names)), emotion, color="0.55")
    bars[int(np.argmax(emotion))].set_color("tab:red")
    ax.set_xticks(range(len(names)), names, fontsize="small")
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title("emotion distribution", fontsize="medium")
    top = 1 - 0.55 / height
    fig.text(0.58, top, "predicted micro-actions", fontsize="medium", va="top")
    fig.text(0.58, top - 0.3 / height, "\n".join(lines), fontsize="small", va="top", linespacing=1.25)
    if title:
        fig.text(0.5, 1 - 0.12 / height, title, fontsize="medium", ha="center", va="top")
    return save_figure(fig, path)


# --- resuming ------------------------------------------------------------------------------------------------------


def per_video_path(out_dir: Path, name: str) -> Path:
    return out_dir / "per_video" / f"{name}.json"


def finished_record(out_dir: Path, item: VideoItem, name: str, fingerprint: dict, job: _Job) -> dict | None:
    """The record of ``item`` this run folder holds when it is complete (its JSON readable, for this video,
    its files present), else None. A complete record made with other settings is refused
    (``PredictError``): its results would be mixed with this run's."""
    path = per_video_path(out_dir, name)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s: unreadable (%s); predicting %s again", path, err, item.id)
        return None
    if not isinstance(record, dict) or record.get("format") != PER_VIDEO_FORMAT \
            or record.get("version") != PER_VIDEO_VERSION or record.get("video") != item.id:
        log.warning("%s: not this video's results; predicting %s again", path, item.id)
        return None
    if record.get("settings") != fingerprint:
        old = record.get("settings") or {}
        diff = ", ".join(f"{k}: {old.get(k)!r} there, {v!r} now" for k, v in fingerprint.items() if old.get(k) != v)
        raise PredictError(f"{out_dir} holds results made with other settings ({diff}; {path}): give a new run "
                           "folder, or predict.resume=false to predict every video again")
    missing = [f for f in job.needed_files(record) if not (out_dir / f).is_file()]
    if job.settings.overlay and "overlay" not in record.get("files", {}):
        missing.append(f"overlays/{name}.mp4")
    if missing:
        log.info("%s: %s missing; predicting it again", item.id, ", ".join(missing))
        return None
    return record


# --- the run -------------------------------------------------------------------------------------------------------


def _progress(enabled: bool, total: int):
    """A rich progress bar over the videos on stderr; a stand-in that does nothing when stderr is not a
    terminal (logs and tests) or ``predict.progress=false``."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
                    disable=not (enabled and console.is_terminal))


def predict(cfg) -> dict[str, Any]:
    """Run the checkpoint ``cfg.ckpt_path`` on the videos of ``cfg.input``; write the files of the module
    docstring to ``cfg.paths.output_dir``. Returns the summary (also written as ``summary.json``).

    Refused before any video is read, naming the key, file or line: bad ``predict.*`` settings, a missing
    checkpoint or one of an unknown task, a missing input, a list naming a missing file, a run folder holding
    results of other settings. A video that cannot be read is counted, named, logged and listed in
    ``failed.csv``, and the run goes on.
    """
    from omegaconf import OmegaConf

    from .pipeline import _seed, load_task
    from .utils.config import print_config, save_resolved_config

    out_dir = Path(cfg.paths.output_dir)
    settings = PredictSettings.from_config(
        OmegaConf.to_container(cfg.predict, resolve=True) if cfg.get("predict") is not None else {})
    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, "", "auto", "last"):
        raise PredictError(f"ckpt_path={ckpt!r}: give the checkpoint file to run, "
                           "e.g. ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt")
    ckpt_path = Path(str(ckpt)).expanduser()
    if not ckpt_path.is_file():
        raise PredictError(f"ckpt_path={ckpt}: no such checkpoint file")
    items = find_videos(cfg.get("input"), exclude=out_dir)
    names = output_names([i.id for i in items])
    if cfg.get("extras", {}).get("print_config"):
        print_config(cfg)
    _seed(cfg)

    task, dm_cls, stored = load_task(str(ckpt_path))
    kind = task_kind(task, str(ckpt_path))
    if kind == "emotion" and settings.test_views is not None and views_of(settings.test_views) != views_of(None):
        raise ConfigError([f"predict.test_views={settings.test_views}: the emotion task has no test-time views "
                           "(it sees T frames over the whole video once); leave predict.test_views unset"])
    clip = ClipSettings.of(task, dm_cls, stored, settings.test_views)
    device = resolve_device(settings.device)
    task = task.eval().to(device)
    fingerprint: dict[str, Any] = {"checkpoint": str(ckpt_path.resolve()), "checkpoint_bytes": ckpt_path.stat().st_size,
                                   "task": kind}
    if kind == "recognition":
        fingerprint.update(window_s=settings.window_s, stride_s=settings.stride_s, threshold=settings.threshold,
                           test_views={"clips": clip.clips, "crops": clip.crops, "average": clip.average})
        if settings.faces is not None:
            log.warning("predict.faces=%s is not used: a recognition checkpoint has no face branch", settings.faces)
    else:
        fingerprint.update(action_threshold=settings.action_threshold,
                           faces=None if settings.faces is None else str(settings.faces.resolve()),
                           face_detector=settings.face_detector)
    job_cls = _RecognitionJob if kind == "recognition" else _EmotionJob
    job = job_cls(task, clip, settings, out_dir, device, fingerprint)
    log.info("%s: %s task, %d frames of %s px per clip (short side %s); %d video(s) from %s; device %s",
             ckpt_path, kind, clip.num_segments, clip.input_size, clip.short_side, len(items), cfg.input, device)
    if clip.views > 1:
        log.info("test-time views: %d temporal clip(s) x %d crop(s) per window, %s averaged%s", clip.clips, clip.crops,
                 clip.average, "" if settings.test_views is not None else " (the checkpoint's data.test_views)")

    # per finished video only what the summary counts; the tables are assembled from the records on disk, so
    # memory does not grow with the number of windows predicted
    records: dict[str, dict] = {}
    if settings.resume:
        for item in items:
            record = finished_record(out_dir, item, names[item.id], fingerprint, job)
            if record is not None:
                records[item.id] = {"whole": record.get("whole")}
        if records:
            log.info("%d of %d videos already done in %s: skipped (predict.resume=false predicts them again)",
                     len(records), len(items), out_dir)
    resumed = len(records)
    save_resolved_config(cfg, out_dir)
    failed: dict[str, str] = {}
    todo = [i for i in items if i.id not in records]

    with _progress(settings.progress, len(items)) as bar:
        progress = bar.add_task("videos", total=len(items), completed=resumed)
        pending: list[tuple[_Video, int, dict[str, torch.Tensor]]] = []
        in_flight: list[_Video] = []

        def fail(video: _Video, err: BaseException) -> None:
            video.failed = failure_reason(err)
            failed[video.item.id] = video.failed
            log.warning("%s: cannot be predicted, left out: %s", video.item.where, video.failed)
            bar.advance(progress)

        def settle() -> None:
            for video in list(in_flight):
                if video.failed:
                    in_flight.remove(video)
                elif video.ready:
                    in_flight.remove(video)
                    try:
                        record = job.finish(video)
                        write_text_atomic(per_video_path(out_dir, video.name), json.dumps(record) + "\n")
                    except (DecodeError, OSError, ValueError) as err:
                        fail(video, err)
                        continue
                    records[video.item.id] = {"whole": record.get("whole")}
                    bar.advance(progress)

        def flush() -> None:
            if not pending:
                return
            batch = {key: torch.stack([inputs[key] for _, _, inputs in pending]) for key in pending[0][2]}
            outputs = job.forward(batch)
            for row, (video, unit, _) in enumerate(pending):
                video.outputs[unit] = {key: value[row] for key, value in outputs.items()}
            pending.clear()
            settle()

        for item in todo:
            video = _Video(item, names[item.id])
            in_flight.append(video)
            bar.update(progress, description=item.id)
            try:
                job.start(video)
                for unit, inputs in video.units:
                    pending.append((video, unit, inputs))
                    if len(pending) >= settings.batch_size:
                        flush()
            except (DecodeError, FaceTrackError, FaceTrackMissingError, OSError) as err:
                fail(video, err)
                pending[:] = [p for p in pending if p[0] is not video]
            video.decoded = True
            settle()
        flush()
        settle()

    done = [records[i.id] for i in items if i.id in records]
    finished = [per_video_path(out_dir, names[i.id]) for i in items if i.id in records]
    files = job.assemble(json.loads(p.read_text(encoding="utf-8")) for p in finished) if finished else {}
    write_failed_csv(out_dir / "failed.csv", [(i, failed[i.id]) for i in items if i.id in failed])
    files["failed"] = "failed.csv"
    summary = {
        "checkpoint": str(ckpt_path), "task": kind, "input": str(cfg.input), "device": str(device),
        "videos": len(items), "predicted": len(done) - resumed, "resumed": resumed, "failed": len(failed),
        "failed_videos": [{"video": i.id, "where": i.where, "reason": failed[i.id]} for i in items if i.id in failed],
        "whole": sum(1 for r in done if r.get("whole")) if kind == "recognition" else None,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()},
        "files": files, "output_dir": str(out_dir),
    }
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    log.info("%d video(s): %d predicted, %d already done, %d failed; results in %s", len(items),
             summary["predicted"], resumed, len(failed), out_dir)
    if failed:
        log.warning("%d video(s) could not be read (failed.csv):\n%s", len(failed),
                    "\n".join(f"  {i.where}: {failed[i.id]}" for i in items if i.id in failed))
    return summary


def failure_reason(err: BaseException) -> str:
    """Why a video failed, without its path (the outputs name the video beside it)."""
    if isinstance(err, DecodeError):
        if err.reason.startswith(("InvalidDataError", "no streams found")):
            return f"not readable as a video ({err.reason})"
        return err.reason
    return str(err)


def write_failed_csv(path: Path, failures: Sequence[tuple[VideoItem, str]]) -> Path:
    """``failed.csv``: one row per video that could not be predicted (its id, where it was given, why); the
    header alone when none failed."""
    import csv

    with atomic_open(path, newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video", "where", "reason"])
        for item, reason in failures:
            writer.writerow([item.id, item.where, reason])
    return path


def exit_message(summary: Mapping[str, Any]) -> str | None:
    """The one line predict.py exits with when no video could be predicted, else None."""
    if summary["failed"] and summary["failed"] == summary["videos"]:
        first = summary["failed_videos"][0]
        more = f" (and {summary['failed'] - 1} more, see failed.csv)" if summary["failed"] > 1 else ""
        return f"no video could be predicted: {first['where']}: {first['reason']}{more}"
    return None

