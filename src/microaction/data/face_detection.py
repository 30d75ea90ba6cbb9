"""Finding the face in every frame of MA-52-Pro's videos and writing their face tracks.

``detect_tracks(ROOT)`` (the command line is ``scripts/detect_faces.py``) reads the list files of an
MA-52-Pro root, decodes each listed video (every frame, or every K-th), runs a face detector on
it, keeps the largest face of each frame, and writes one track per video
(``faces.track_path``; the format is in ``faces``). Nothing is smoothed or filled here: frames
without a face have no row, and ``faces.read_track`` interpolates when the track is read.

Detectors (``DETECTORS``), each with its weights inside a pip package, nothing downloaded:

- ``haar`` (the default): OpenCV's frontal-face Haar cascade, bundled with opencv-python-headless
  below 5 (the ``faces`` extra). Boxes only, so its tracks have no landmark columns.
- ``mtcnn``: facenet-pytorch's MTCNN (boxes and five landmarks). That package's metadata pins
  torch < 2.3 and numpy < 2, so it cannot be a dependency; installed by hand without its
  dependencies (``pip install --no-deps facenet-pytorch==2.6.0``) it runs with current torch.

Safety as in ``prepare``: a track is written under a temporary name and renamed when complete, so
a track under its final name is always whole; a rerun skips the videos whose track exists (after
checking it reads as a track); temporary files of a killed run are removed by the next one; a
destination that cannot be written (read-only, full) stops the run with one line.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .annotations import SPLITS, list_path, name_problem, video_dir
from .faces import FaceTrackError, faces_dir, read_track, track_path, write_track
from .prepare import _default_workers, _pool_context, _worker_start
from .video import DecodeError, _decoded, _frame_packets, _open_video, quarter_turns, scaled_size

DETECTORS = ("haar", "mtcnn")
DEFAULT_SHORT_SIDE = 360
EXTRA_HINT = 'pip install -e ".[faces]" (or pip install "opencv-python-headless>=4.8,<5")'
MTCNN_HINT = ("pip install --no-deps facenet-pytorch==2.6.0 (its metadata pins torch<2.3 and numpy<2, so it is "
              "installed without its dependencies; it runs with the torch installed here)")
LIST_FORMAT = "'<video> <emotion id> <fine id>[,<fine id>...]'"
# write_track's temporary name: ".<final name>.part-<pid>"
PART_RE = re.compile(r"^\.(?P<final>.+)\.part-(?P<pid>[0-9]+)$")


class DetectorUnavailable(RuntimeError):
    """The chosen detector's package is not installed (the message says how to install it)."""


class DetectFacesError(RuntimeError):
    """Stops the whole run: bad arguments or list lines, a missing detector, an unusable destination."""


# --- detectors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the image given to the detector
    score: float  # in [0, 1]
    landmarks: np.ndarray | None = None  # [5, 2] pixels: left eye, right eye, nose, mouth left, mouth right


def _import_cv2():
    try:
        import cv2
    except ImportError as err:
        raise DetectorUnavailable(f"the haar face detector needs OpenCV ({err}); install the faces extra: "
                                  f"{EXTRA_HINT}") from None
    if not hasattr(cv2, "data") or not os.path.isdir(getattr(cv2.data, "haarcascades", "")):
        raise DetectorUnavailable(f"OpenCV {cv2.__version__} ships no Haar cascades (OpenCV 5 dropped them); "
                                  f"install the faces extra, which keeps it below 5: {EXTRA_HINT}")
    return cv2


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (bundled with opencv-python-headless < 5); boxes only.

    The image is turned grey and histogram-equalised (the cascade was trained on such images).
    The cascade gives no probability: ``score`` is the logistic of its last stage's weight, a
    monotone confidence for ranking, not a calibrated probability. Faces smaller than
    ``min_size`` of the image's short side (at least the cascade's 24 pixel window) are not sought.
    """

    name = "haar"
    landmarks = False

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: float = 0.05):
        self._cv2 = cv2 = _import_cv2()
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise DetectorUnavailable(f"OpenCV could not load its bundled cascade {path}; reinstall: {EXTRA_HINT}")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        cv2 = self._cv2
        gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))
        smallest = max(24, int(self.min_size * min(gray.shape)))
        rects, _levels, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(smallest, smallest),
            outputRejectLevels=True)
        return [Face((float(x), float(y), float(x + w), float(y + h)), 1.0 / (1.0 + math.exp(-float(weight))))
                for (x, y, w, h), weight in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1))]


class MtcnnDetector:
    """facenet-pytorch's MTCNN on the CPU: boxes, probabilities and five landmarks per face."""

    name = "mtcnn"
    landmarks = True

    def __init__(self):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise DetectorUnavailable(f"--detector mtcnn needs facenet-pytorch ({err}); {MTCNN_HINT}") from None
        self._mtcnn = MTCNN(keep_all=True, device="cpu")

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        boxes, probs, points = self._mtcnn.detect(np.ascontiguousarray(rgb), landmarks=True)
        if boxes is None:
            return []
        return [Face(tuple(float(v) for v in box), float(p), np.asarray(pts, np.float64))
                for box, p, pts in zip(boxes, probs, points)]


def make_detector(name: str):
    """The detector called ``name`` (one of ``DETECTORS``); DetectorUnavailable if its package is missing."""
    if name == "haar":
        return HaarDetector()
    if name == "mtcnn":
        return MtcnnDetector()
    raise ValueError(f"unknown face detector {name!r}; choose from {DETECTORS}")


def _set_threads(torch_threads: int, cv2_threads: int | None) -> tuple[int, int | None]:
    """Set torch's and OpenCV's (when installed) thread counts; returns the previous ones."""
    import torch

    try:
        import cv2
    except ImportError:
        cv2 = None
    before = (torch.get_num_threads(), cv2.getNumThreads() if cv2 is not None else None)
    torch.set_num_threads(torch_threads)
    if cv2 is not None and cv2_threads is not None:
        cv2.setNumThreads(cv2_threads)
    return before


@contextlib.contextmanager
def _single_threaded():
    """One thread for OpenCV and torch while detecting; the previous setting comes back after.

    The parallelism is across videos (the worker processes); a detector on one frame gains little
    from threads and loses much when the cores are busy (MTCNN ran 20 times slower with two
    threads on two loaded cores than with one).
    """
    before = _set_threads(1, 1)
    try:
        yield
    finally:
        _set_threads(*before)


# --- one video -------------------------------------------------------------------------------------


def iter_frames(path: str | Path, every: int = 1, short_side: int | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(index, frame)`` for every decoded frame of the video, in order; ``frame`` is uint8
    [H, W, 3] RGB in display orientation for every ``every``-th frame (0, every, 2 * every, ...)
    and None for the others (decoded, not converted). Frames are scaled down (never up) so the
    short side is ``short_side`` (None: as stored). Frame numbers are those ``video.read_frames``
    uses. A clip that cannot be read raises ``DecodeError``.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    path = Path(path)
    with _open_video(path) as (container, stream):
        for n, frame in enumerate(_decoded(stream, _frame_packets(container, stream))):
            if n % every:
                yield n, None
                continue
            w, h = scaled_size(frame.width, frame.height, short_side, upscale=False)
            rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
            turns = quarter_turns(frame.rotation)
            yield n, (np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb)


@dataclass
class VideoFaces:
    rows: list[tuple[float, ...]]  # the track's rows (frame, box, score[, landmarks]) as fractions
    frames: int  # frames decoded
    sampled: int  # frames given to the detector


def _largest(faces: list[Face]) -> Face | None:
    if not faces:
        return None
    return max(faces, key=lambda f: ((f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), f.score))


def _row(index: int, face: Face, width: int, height: int, with_landmarks: bool) -> tuple[float, ...] | None:
    """The track row of ``face`` (pixels of a width x height image): fractions, clipped to the
    frame (detectors may reach past its edge); None if nothing of the box is inside it."""
    x0, y0, x1, y1 = face.box
    box = (min(max(x0 / width, 0.0), 1.0), min(max(y0 / height, 0.0), 1.0),
           min(max(x1 / width, 0.0), 1.0), min(max(y1 / height, 0.0), 1.0))
    # what write_track keeps (six decimals) must still have x0 < x1 and y0 < y1
    if round(box[2], 6) <= round(box[0], 6) or round(box[3], 6) <= round(box[1], 6):
        return None
    row = (index, *box, min(max(face.score, 0.0), 1.0))
    if with_landmarks:
        points = np.asarray(face.landmarks, np.float64) / np.array([width, height])
        row += tuple(np.clip(points, 0.0, 1.0).reshape(-1).tolist())
    return row


def face_row(detector, index: int, rgb: np.ndarray, with_landmarks: bool | None = None) -> tuple[float, ...] | None:
    """The face-track row of frame ``index`` (uint8 RGB [H, W, 3]): ``detector``'s largest face, as fractions of
    the frame (landmarks when ``with_landmarks``, default: when the detector gives them); None without a face."""
    if with_landmarks is None:
        with_landmarks = bool(getattr(detector, "landmarks", False))
    face = _largest(detector(rgb))
    return None if face is None else _row(index, face, rgb.shape[1], rgb.shape[0], with_landmarks)


def detect_video(path: str | Path, detector: Callable[[np.ndarray], list[Face]], every: int = 1,
                 short_side: int | None = DEFAULT_SHORT_SIDE) -> VideoFaces:
    """Run ``detector`` on every ``every``-th frame of the video; one row per frame with a face
    (the largest one), coordinates as fractions of the displayed frame."""
    with_landmarks = bool(getattr(detector, "landmarks", False))
    rows: list[tuple[float, ...]] = []
    frames = sampled = 0
    for n, rgb in iter_frames(path, every, short_side):
        frames = n + 1
        if rgb is None:
            continue
        sampled += 1
        row = face_row(detector, n, rgb, with_landmarks)
        if row is not None:
            rows.append(row)
    if frames == 0:
        raise DecodeError(path, "no frame could be decoded")
    return VideoFaces(rows, frames, sampled)


# --- the run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    split: str
    name: str
    list_file: Path
    line: int
    src: Path
    dst: Path


@dataclass
class Outcome:
    task: Task
    faces: VideoFaces | None = None
    problem: str | None = None  # the video is unusable
    fatal: str | None = None  # the destination is unusable: stop


@dataclass
class DetectSummary:
    written: int = 0  # tracks written by this run
    no_face: int = 0  # of those, tracks with no face (header only)
    skipped: int = 0  # tracks already there
    frames: int = 0  # frames decoded in the videos of the written tracks
    sampled: int = 0  # of those, frames given to the detector
    with_face: int = 0  # of those, frames with a face
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _describe_write_error(path: Path, err: OSError) -> str:
    """One line for a failure to write ``path``: what happened and what the user can do."""
    code = getattr(err, "errno", None)
    detail = " ".join(str(err).split())
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"the destination is full (writing {path}: {detail}). Nothing half-written was left; free space "
                f"and rerun the same command: finished tracks are kept and skipped")
    if code == errno.EROFS:
        return (f"the dataset root is on a read-only file system (writing {path}: {detail}); the tracks go "
                f"beside the videos (faces_<split>/): run on a writable copy of the root")
    if code in (errno.EACCES, errno.EPERM):
        return f"no permission to write {path} ({detail}); run as a user who can write the dataset root"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot write {path}: a file stands where a folder is expected ({detail})"
    return f"cannot write {path}: {type(err).__name__}: {detail}"


@contextlib.contextmanager
def _writing(path: Path):
    try:
        yield
    except OSError as err:
        raise DetectFacesError(_describe_write_error(path, err)) from None


def _listed_videos(path: Path) -> list[tuple[str, int]]:
    """(video name, line) of each line of an MA-52-Pro list; only the name is checked here (the
    labels are the annotation reader's business)."""
    if not path.is_file():
        raise DetectFacesError(f"list file not found: {path}; expected the MA-52-Pro layout (train_list_videos.txt, "
                               f"val_list_videos.txt, test_list_videos.txt beside videos_<split>/), or choose the "
                               f"splits with --splits")
    split = path.name.split("_")[0]
    out: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            raise DetectFacesError(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start}); expected "
                                   f"{LIST_FORMAT}") from None
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3:
            raise DetectFacesError(f"{path}:{lineno}: expected {LIST_FORMAT}, got {line!r}")
        name = fields[0]
        problem = name_problem(name)
        if problem is not None:
            raise DetectFacesError(f"{path}:{lineno}: video name {name!r} {problem}; expected a relative path "
                                   f"inside videos_{split}/ such as s012_c003.mp4")
        if name in seen:
            raise DetectFacesError(f"{path}:{lineno}: {name} already listed on line {seen[name]}; expected each "
                                   f"video once")
        seen[name] = lineno
        out.append((name, lineno))
    if not out:
        raise DetectFacesError(f"{path}: list file has no entries; expected {LIST_FORMAT} lines")
    return out


def _plan(root: Path, splits, summary: DetectSummary) -> list[Task]:
    """Every listed video whose track is still to be made; checks what is already there."""
    tasks: list[Task] = []
    foreign: list[str] = []
    for split in splits:
        listed_in = list_path(root, split)
        for name, line in _listed_videos(listed_in):
            src = video_dir(root, split) / name
            dst = track_path(root, split, name)
            if os.path.lexists(dst):
                mode = os.lstat(dst).st_mode
                if not stat.S_ISREG(mode):
                    foreign.append(f"{dst} ({'a symbolic link' if stat.S_ISLNK(mode) else 'not a regular file'})")
                    continue
                try:
                    read_track(dst)
                except FaceTrackError as err:
                    foreign.append(f"{dst} (not a face track: {' '.join(str(err).split())})")
                    continue
                summary.skipped += 1
                continue
            if not src.is_file():
                summary.problems.append(f"{listed_in}:{line}: missing file {src}")
                continue
            tasks.append(Task(split, name, listed_in, line, src, dst))
    if foreign:
        more = f"; {len(foreign) - 1} more such files" if len(foreign) > 1 else ""
        raise DetectFacesError(f"{foreign[0]} is already there under a listed video's track name{more}. A track this "
                               f"tool finished is always a whole, valid track, so it was put there or changed by "
                               f"something else. It was left as it is: check it and move it away, then rerun")
    return tasks


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_parts(root: Path, splits) -> int:
    """Remove temporary track files whose writing process no longer exists (left by a killed run)."""
    n = 0
    for split in splits:
        folder = faces_dir(root, split)
        if not folder.is_dir():
            continue
        for top, _dirs, files in os.walk(folder):
            for name in files:
                found = PART_RE.match(name)
                path = Path(top) / name
                if found and not _pid_alive(int(found["pid"])) and stat.S_ISREG(os.lstat(path).st_mode):
                    with _writing(path):
                        path.unlink()
                    n += 1
    return n


def _process(task: Task, detector_name: str, every: int, short_side: int | None) -> Outcome:
    """Detect the faces of one video and write its track (temporary name, then rename)."""
    detector = _detector(detector_name)
    try:
        faces = detect_video(task.src, detector, every, short_side)
    except DecodeError as err:
        return Outcome(task, problem=err.reason if err.__cause__ is None else f"cannot decode: {err.reason}")
    try:
        write_track(task.dst, faces.rows, landmarks=detector.landmarks)
    except OSError as err:
        return Outcome(task, fatal=_describe_write_error(task.dst, err))
    return Outcome(task, faces=faces)


_DETECTORS: dict[str, object] = {}


def _detector(name: str):
    """This process's detector (made once per process: loading a model costs more than a frame)."""
    if name not in _DETECTORS:
        _DETECTORS[name] = make_detector(name)
    return _DETECTORS[name]


def _worker_init(parent_pid: int) -> None:
    _worker_start(parent_pid)
    _set_threads(1, 1)


def _run(tasks: list[Task], detector: str, every: int, short_side: int | None, workers: int, on_outcome,
         show_progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=False) as bar:
        job = bar.add_task("detecting faces", total=len(tasks))
        if workers <= 1 or len(tasks) <= 1:
            with _single_threaded():
                for task in tasks:
                    on_outcome(_process(task, detector, every, short_side))
                    bar.advance(job)
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:
            queue = iter(tasks)
            pending = set()
            for task in queue:  # a bounded number in flight, so a stop is quick
                pending.add(pool.submit(_process, task, detector, every, short_side))
                if len(pending) >= 2 * workers:
                    break
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        on_outcome(fut.result())
                        bar.advance(job)
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending.add(pool.submit(_process, nxt, detector, every, short_side))
            except BaseException:
                for fut in pending:
                    fut.cancel()
                # videos in flight finish (whole tracks) before the pool closes
                raise


def detect_tracks(
    root: str | Path,
    splits=SPLITS,
    detector: str = "haar",
    every: int = 1,
    workers: int | None = None,
    short_side: int | None = DEFAULT_SHORT_SIDE,
    show_progress: bool = True,
) -> DetectSummary:
    """Write the face track of every listed video of ``root`` that has none yet.

    Raises DetectFacesError to stop (before any video is decoded when the cause can be seen
    beforehand: arguments, list lines, the detector's package, files in the way); a video that
    is missing or cannot be decoded is a problem in the summary, and gets no track.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DetectFacesError(f"dataset root does not exist: {root}")
    for split in splits:
        if split not in SPLITS:
            raise DetectFacesError(f"unknown split {split!r}; choose from {SPLITS}")
    if detector not in DETECTORS:
        raise DetectFacesError(f"unknown detector {detector!r}; choose from {', '.join(DETECTORS)}")
    if every < 1:
        raise DetectFacesError(f"--every must be >= 1, got {every}")
    if short_side and short_side < 24:
        raise DetectFacesError(f"--short-side must be 0 (frames as stored) or >= 24 (the smallest face the "
                               f"detectors look for), got {short_side}")
    workers = _default_workers() if workers is None else max(1, workers)
    try:
        _detector(detector)  # its package is there, before any work starts (workers inherit it)
    except DetectorUnavailable as err:
        raise DetectFacesError(str(err)) from None
    summary = DetectSummary()
    tasks = _plan(root, splits, summary)
    stale = _remove_stale_parts(root, splits)
    if stale:
        summary.notes.append(f"removed {stale} temporary files left by an interrupted run")
    for folder in sorted({t.dst.parent for t in tasks}):
        with _writing(folder):
            folder.mkdir(parents=True, exist_ok=True)

    def on_outcome(outcome: Outcome) -> None:
        task = outcome.task
        if outcome.fatal:
            raise DetectFacesError(outcome.fatal)
        if outcome.problem:
            summary.problems.append(f"{task.list_file}:{task.line}: {task.src}: {outcome.problem}")
            return
        faces = outcome.faces
        summary.written += 1
        summary.no_face += not faces.rows
        summary.frames += faces.frames
        summary.sampled += faces.sampled
        summary.with_face += len(faces.rows)

    _run(tasks, detector, every, short_side, workers, on_outcome, show_progress)
    if summary.no_face:
        summary.notes.append(f"{summary.no_face} videos with no face found: their tracks have only the header "
                             f"(the loader then uses the whole frame and counts it)")
    return summary
