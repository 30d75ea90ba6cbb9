"""Verify a downloaded MA-52 release and transcode it into a small, fast cache.

``prepare(SOURCE, DEST)`` (the command line is ``scripts/prepare_ma52.py``)
checks every list line of SOURCE (file present, clip decodes completely, label
in range), then writes DEST in the official layout with every clip scaled to
``EncodeSettings.short_side`` (256), re-encoded as H.264 with a short keyframe
interval and no audio (``video.decode_all`` and ``video.encode_clip``), plus
``manifest.csv`` (frame count, fps, duration, size per clip) which the
datamodule reads instead of counting frames itself. Without DEST it only
verifies.

Safety on a shared server: every output is written under a hidden temporary
name and renamed when complete, so a clip under its final name is always whole;
a rerun skips finished clips; a full disk stops the run with nothing
half-written; the list files (what makes DEST usable) are written last, only
when every clip is ready; a lock stops two runs from sharing one DEST, and no
worker process outlives the run that started it, so a killed run never keeps
the lock. Nothing is read outside SOURCE or written outside DEST: a list line
naming an absolute path or ``..`` is refused (``annotations.read_list``), and so
is a listed clip that is a symbolic link (or lies under one) leading out of
SOURCE. A file the tool did not write is never removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import multiprocessing
import os
import re
import shutil
import signal
import stat
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..labels import LabelSpace
from ..utils.atomic import write_text_atomic
from ..utils.cpus import usable_cpus
from .annotations import (SPLITS, AnnotationError, ClipRecord, UnsafeNameError, list_path, read_label_names,
                          read_list, video_dir)
from .layout import write_lists
from .manifest import MANIFEST_NAME, ClipInfo, probe_clip, write_manifest
from .video import DecodeError, decode_all, encode_clip

EXPECTED_COUNTS = {"train": 11250, "val": 5586, "test": 5586}
# the release's classes, names and published training counts
MA52 = LabelSpace.ma52()
SETTINGS_NAME = ".prepare-settings.json"
JOURNAL_NAME = ".prepare-journal.jsonl"
LOCK_NAME = ".prepare.lock"
REPORT_NAME = "prepare_report.txt"
PART_TAG = ".part-"
# The tool's own temporary names: ".<final name>.part-<pid>" (files, and the ".lists.part-<pid>" folder).
PART_RE = re.compile(r"^\.(?P<final>.+)" + re.escape(PART_TAG) + r"[0-9]+$")
# write_manifest's temporary name (manifest.py): ".manifest.csv.<pid>.part".
MANIFEST_PART_RE = re.compile(r"^\." + re.escape(MANIFEST_NAME) + r"\.[0-9]+\.part$")


class PrepareError(RuntimeError):
    """Stops the whole run (bad arguments, unusable destination, full disk)."""


@dataclass(frozen=True)
class EncodeSettings:
    short_side: int = 256
    gop: int = 16
    crf: int = 23
    preset: str = "veryfast"
    tune: str | None = None

    def check(self) -> None:
        if self.short_side < 16 or self.short_side % 2:
            raise PrepareError(f"--short-side must be an even number >= 16, got {self.short_side}")
        if self.gop < 1:
            raise PrepareError(f"--gop must be >= 1, got {self.gop}")
        if not 0 <= self.crf <= 51:
            raise PrepareError(f"--crf must be in 0..51, got {self.crf}")


@dataclass(frozen=True)
class Task:
    split: str
    record: ClipRecord
    src: Path  # as listed: videos_<split>/<name> under SOURCE
    dst: Path | None  # None: verify only
    list_file: Path
    roots: tuple[Path, ...]  # resolved folders the source clip may lead into (SOURCE, and link_roots)


@dataclass
class Outcome:
    task: Task
    info: ClipInfo | None = None
    problem: str | None = None  # the source clip is unusable
    fatal: str | None = None  # the destination is unusable: stop everything


@dataclass
class Summary:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, Counter] = field(default_factory=dict)
    done: int = 0
    skipped: int = 0
    infos: dict[tuple[str, str], ClipInfo] = field(default_factory=dict)
    wrote_layout: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


# --- one clip (runs in worker processes) --------------------------------------------------


def _problem(err: DecodeError) -> str:
    """What is wrong with a source clip, for the report: a failure inside the decoder (the error's
    cause) is said to be one; a clip that lacks what a copy needs is described as it is."""
    return err.reason if err.__cause__ is None else f"cannot decode: {err.reason}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_clip(task: Task, settings: EncodeSettings) -> Outcome:
    """Verify one clip and, with a destination, transcode it (temporary name, then rename)."""
    # Checked again here, where the file is opened: the plan's check (see _plan) may be minutes old.
    real = _resolve(task.src)
    if not _within(real, task.roots):
        return Outcome(task, problem=f"now leads to {real or 'a symbolic link loop'}, outside the source root "
                                     f"{task.roots[0]}; expected the clip inside it (it changed during the run)")
    try:
        clip = decode_all(real, None if task.dst is None else settings.short_side)
    except DecodeError as err:
        return Outcome(task, problem=_problem(err))
    if task.dst is None:
        info = probe_clip(real, task.split, task.record.name)
        return Outcome(task, info=info)
    tmp = task.dst.with_name(f".{task.dst.name}{PART_TAG}{os.getpid()}")
    try:
        encode_clip(tmp, clip.frames, clip.time_base, clip.rate, gop=settings.gop, crf=settings.crf,
                    preset=settings.preset, tune=settings.tune, rotation=clip.rotation)
        info = probe_clip(tmp, task.split, task.record.name)
        if info.frames != len(clip.frames):
            raise PrepareError(f"{tmp}: wrote {len(clip.frames)} frames but {info.frames} came back")
        _fsync(tmp)
        os.replace(tmp, task.dst)
    except Exception as err:  # noqa: BLE001 - any failure to write is the destination's: stop
        return Outcome(task, fatal=_describe_write_error(task.dst, err))
    finally:
        with contextlib.suppress(OSError):  # a failure here is already reported above
            tmp.unlink(missing_ok=True)
    return Outcome(task, info=info)


def _describe_write_error(dst: Path, err: Exception) -> str:
    """One line for a failure to write ``dst``: what happened and what the user can do."""
    code = getattr(err, "errno", None)
    detail = " ".join(str(err).split())  # one line whatever the library put in the message
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"the destination is full (writing {dst}: {detail}). Nothing half-written was left; "
                f"free space (the cache needs about 1/10 of the release) and rerun the same command: "
                f"finished clips are kept and skipped")
    if code == errno.EROFS:
        return (f"the destination is on a read-only file system (writing {dst}: {detail}); "
                f"choose a destination on a writable file system")
    if code in (errno.EACCES, errno.EPERM):
        return f"no permission to write {dst} ({detail}); choose a destination you can write to"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot write {dst}: a file stands where a folder is expected ({detail})"
    return f"cannot write {dst}: {type(err).__name__}: {detail}"


@contextlib.contextmanager
def _writing(path: Path):
    """Turn a failure to write ``path`` into a PrepareError (one line, exit status 2)."""
    try:
        yield
    except OSError as err:
        raise PrepareError(_describe_write_error(path, err)) from None


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` under the tool's temporary name, sync and rename; never leave the temporary file."""
    write_text_atomic(path, text, tag=PART_TAG)


def _resolve(path: Path) -> Path | None:
    """``path`` with every symbolic link followed; None for a link loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def _within(real: Path | None, roots) -> bool:
    return real is not None and any(real.is_relative_to(r) for r in roots)


def _check_dest_entry(path: Path, dest: Path) -> None:
    """A file or folder the run uses in DEST must not be a link leading out of DEST."""
    if os.path.lexists(path):
        real = _resolve(path)
        if not _within(real, (dest,)):
            raise PrepareError(f"{path} leads to {real or 'a symbolic link loop'}, outside the destination {dest}; "
                               f"this tool writes only inside DEST: check that link and move it away yourself, "
                               f"or choose another destination")


# --- the run ------------------------------------------------------------------------------


def _check_source_entry(path: Path, roots) -> None:
    if os.path.lexists(path):
        real = _resolve(path)
        if not _within(real, roots):
            raise PrepareError(f"{path} leads to {real or 'a symbolic link loop'}, outside the source root "
                               f"{roots[0]}; expected it inside the source root (copy it in instead of linking)")


def _read_lists(source: Path, splits, summary: Summary, roots=None) -> dict[str, list[ClipRecord]]:
    records: dict[str, list[ClipRecord]] = {}
    for split in splits:
        _check_source_entry(list_path(source, split), roots or (source,))
        try:
            records[split] = read_list(list_path(source, split), MA52.num_classes)
        except UnsafeNameError as err:
            # A name that could lead outside the split's folder: refused before anything is read or written.
            raise PrepareError(str(err)) from None
        except (AnnotationError, FileNotFoundError) as err:
            summary.problems.append(str(err).splitlines()[0])
            continue
        summary.counts[split] = Counter(r.label for r in records[split])
        expected = EXPECTED_COUNTS[split]
        if len(records[split]) != expected:
            summary.notes.append(f"{split}: {len(records[split])} clips listed, the full release has {expected} "
                                 f"(fine for a subset)")
    return records


def _label_names(source: Path, summary: Summary, roots=None) -> list[str] | None:
    path = source / "label_name.txt"
    _check_source_entry(path, roots or (source,))
    if not path.is_file():
        summary.notes.append(f"{path} absent: the destination gets the package's class names")
        return None
    try:
        return read_label_names(path, MA52.num_classes)
    except (AnnotationError, UnicodeDecodeError, OSError) as err:
        summary.problems.append(f"{path}: {err}" if isinstance(err, UnicodeDecodeError) else str(err))
        return None


def _plan(source: Path, dest: Path | None, records, summary: Summary, roots) -> list[Task]:
    """One task per listed clip that exists. A clip that is a symbolic link (or lies under one) leading out
    of the source root stops the run here, before anything is read or written."""
    tasks: list[Task] = []
    outside: list[str] = []
    for split, recs in records.items():
        folder, listed_in = video_dir(source, split), list_path(source, split)
        real_folder = _resolve(folder)
        for rec in recs:
            src = folder / rec.name
            real = _resolve(src)
            if not _within(real, roots):
                outside.append(f"{listed_in}:{rec.line}: {src} leads to {real or 'a symbolic link loop'}"
                               + ("" if _within(real_folder, roots) else f" (its folder is a link to {real_folder})"))
                continue
            if not real.is_file():
                summary.problems.append(f"{listed_in}:{rec.line}: missing file {src}")
                continue
            dst = None if dest is None else video_dir(dest, split) / rec.name
            tasks.append(Task(split, rec, src, dst, listed_in, tuple(roots)))
    if outside:
        more = f" (and {len(outside) - 1} more such lines)" if len(outside) > 1 else ""
        raise PrepareError(f"{outside[0]}, outside the source root {source}{more}; expected every listed clip "
                           f"inside the source root: copy the clips in (or bind-mount their folder) instead of "
                           f"linking to them")
    return tasks


# Descriptors of the DEST locks this process holds. A forked child closes its copies at once (see
# _close_locks_in_child), so only this process keeps the lock.
_HELD_LOCK_FDS: set[int] = set()


def _close_locks_in_child() -> None:
    for fd in _HELD_LOCK_FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_locks_in_child)


class _Lock:
    """An exclusive lock on DEST, released by the kernel when this process ends, however it ends.

    It is an flock, which belongs to the open file description: every process holding a copy of the
    descriptor holds the lock. Forked worker processes would inherit a copy and, if this process were
    killed, keep DEST locked for as long as they live. So a forked child closes its copy before it runs
    anything (os.register_at_fork; it does not unlock, which would release the parent's lock too), the
    descriptor is close-on-exec for any program started, and the workers also end with this process
    (_worker_start): a rerun after a kill finds DEST free and no stray writer in it.
    """

    def __init__(self, dest: Path):
        self.dest = dest
        self.path = dest / LOCK_NAME

    def __enter__(self):
        _check_dest_entry(self.path, self.dest)
        with _writing(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PrepareError(f"another prepare_ma52 run is using {self.dest}; wait for it or use "
                               f"another destination") from None
        except OSError as err:
            os.close(fd)
            raise PrepareError(f"cannot lock {self.path} ({err}); choose a destination on a local file "
                               f"system") from None
        self.fd = fd
        _HELD_LOCK_FDS.add(fd)
        return self

    def __exit__(self, *exc):
        _HELD_LOCK_FDS.discard(self.fd)
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _worker_start(parent_pid: int) -> None:
    """First thing in every worker process: end when the run that started it ends.

    Without this, a worker of a run killed with SIGKILL waits forever for its next clip. On Linux the
    kernel sends the worker SIGKILL when its parent dies (PR_SET_PDEATHSIG); elsewhere a thread watches
    the parent. A temporary file a worker leaves is removed by the next run (its name says whose it is).
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the above took effect
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _pool_context():
    # Workers are forked on Linux (fast start; _worker_start checks that its parent is this process).
    # Elsewhere the platform's default start method is used; it does not copy descriptors either.
    return multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None


def _check_settings(dest: Path, settings: EncodeSettings) -> None:
    path = dest / SETTINGS_NAME
    _check_dest_entry(path, dest)
    wanted = asdict(settings)
    if os.path.lexists(path):
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(have, dict):
                raise ValueError(f"expected a JSON object, got {type(have).__name__}")
        except (OSError, ValueError) as err:
            raise PrepareError(f"{path} is not the settings file this tool writes ({' '.join(str(err).split())}); "
                               f"it was left as it is: check it and move it away yourself, or choose another "
                               f"destination") from None
        if have != wanted:
            diff = ", ".join(f"{k}: {have.get(k)!r} there, {v!r} asked" for k, v in wanted.items() if have.get(k) != v)
            raise PrepareError(f"{dest} was prepared with other settings ({diff}); rerun with the same settings "
                               f"or choose a new destination, so one cache never mixes two encodings")
        return
    with _writing(path):
        _write_atomic(path, json.dumps(wanted, indent=1) + "\n")


def _remove_stale_parts(dest: Path, splits) -> int:
    """Remove what a killed run left under the tool's own temporary names; the lock guarantees no live
    run owns them. Only regular files (never links) named as this tool names them are touched, and the
    ".lists.part-<pid>" folder only while it holds nothing but list files."""
    n = 0
    with _writing(dest):
        for split in splits:
            folder = video_dir(dest, split)
            if not folder.is_dir():
                continue
            for top, _dirs, files in os.walk(folder):  # does not follow links to folders
                for name in files:
                    path = Path(top) / name
                    if PART_RE.match(name) and stat.S_ISREG(os.lstat(path).st_mode):
                        path.unlink()
                        n += 1
        for path in dest.iterdir():
            found = PART_RE.match(path.name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) and (MANIFEST_PART_RE.match(path.name) or (found and found["final"] in (
                    "label_name.txt", REPORT_NAME, SETTINGS_NAME))):
                path.unlink()
                n += 1
            elif stat.S_ISDIR(mode) and found and found["final"] == "lists":
                inside = list(path.iterdir())
                if all(p.name in {list_path(Path(), s).name for s in SPLITS} and stat.S_ISREG(os.lstat(p).st_mode)
                       for p in inside):
                    for p in inside:
                        p.unlink()
                        n += 1
                    path.rmdir()
    return n


def _read_journal(dest: Path) -> dict[tuple[str, str], ClipInfo]:
    path = dest / JOURNAL_NAME
    out: dict[tuple[str, str], ClipInfo] = {}
    if path.is_file():
        with _writing(path):  # reading it: the same one-line stop if DEST is unusable
            text = path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            try:
                info = ClipInfo(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut by a kill; that clip is probed again
            out[(info.split, info.name)] = info
    return out


def _run_tasks(tasks: list[Task], settings: EncodeSettings, workers: int, on_outcome, progress_label: str,
               show_progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=False) as bar:
        job = bar.add_task(progress_label, total=len(tasks))
        if workers <= 1:
            for task in tasks:
                on_outcome(process_clip(task, settings))
                bar.advance(job)
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_worker_start,
                                 initargs=(os.getpid(),)) as pool:
            pending = set()
            queue = iter(tasks)
            # Keep a bounded number in flight, so a fatal error stops the run quickly.
            for task in queue:
                pending.add(pool.submit(process_clip, task, settings))
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
                            pending.add(pool.submit(process_clip, nxt, settings))
            except BaseException:
                for fut in pending:
                    fut.cancel()
                # In-flight clips finish (complete files) or clean up after themselves.
                for fut in pending:
                    if not fut.cancelled():
                        try:
                            on_outcome(fut.result(), final=True)
                        except BaseException:  # noqa: BLE001 - already stopping; the first error is raised
                            pass
                raise


def prepare(
    source: str | Path,
    dest: str | Path | None = None,
    settings: EncodeSettings = EncodeSettings(),
    splits=SPLITS,
    workers: int | None = None,
    drop_unreadable: bool = False,
    report: str | Path | None = None,
    show_progress: bool = True,
    link_roots=(),
) -> Summary:
    """Verify ``source`` and (with ``dest``) build the cache. Raises PrepareError to stop.

    Every clip, list file and ``label_name.txt`` must lie inside ``source`` once symbolic links are
    followed; ``link_roots`` names further folders links may lead into (for a caller that builds a release
    out of links to another one, as scripts/bench_loader.py does). The command line has no such option.
    """
    source = Path(source).expanduser().resolve()
    settings.check()
    if not source.is_dir():
        raise PrepareError(f"source root does not exist: {source}")
    for split in splits:
        if split not in SPLITS:
            raise PrepareError(f"unknown split {split!r}; choose from {SPLITS}")
    if dest is not None:
        dest = Path(dest).expanduser().resolve()
        if dest == source or source in dest.parents:
            raise PrepareError(f"destination {dest} must not be the source or inside it")
        if os.path.lexists(dest) and not dest.is_dir():
            raise PrepareError(f"destination {dest} exists and is not a folder; choose a folder (new or made "
                               f"by this tool)")
    roots = (source, *(Path(r).expanduser().resolve() for r in link_roots))
    workers = _default_workers() if workers is None else workers
    summary = Summary()
    records = _read_lists(source, splits, summary, roots)
    names = _label_names(source, summary, roots)
    tasks = _plan(source, dest, records, summary, roots)

    report_path = Path(report) if report else (dest / REPORT_NAME if dest else Path.cwd() / "ma52_verify_report.txt")
    if dest is None:
        _execute(tasks, settings, workers, summary, None, show_progress)
        _write_report(report_path, source, dest, summary, names)
        return summary
    with _writing(dest):
        dest.mkdir(parents=True, exist_ok=True)
    with _Lock(dest):
        _check_settings(dest, settings)
        _make_folders(dest, records, tasks, report_path)
        stale = _remove_stale_parts(dest, records)
        if stale:
            summary.notes.append(f"removed {stale} temporary files left by an interrupted run")
        finished = False
        try:
            _execute(tasks, settings, workers, summary, dest, show_progress)
            if summary.ok or drop_unreadable:
                with _writing(dest):
                    _write_layout(dest, records, summary, names)
            finished = True
        finally:
            # After a stop the report is still attempted; if it cannot be written either, the first error
            # is the one the user sees.
            try:
                _write_report(report_path, source, dest, summary, names)
            except PrepareError:
                if finished:
                    raise
    return summary


def _make_folders(dest: Path, records, tasks: list[Task], report_path: Path) -> None:
    """The split folders (and any subfolders the list names use), each checked to stay inside DEST."""
    for path in (dest / JOURNAL_NAME, report_path, dest / MANIFEST_NAME, dest / "label_name.txt",
                 *(list_path(dest, s) for s in records)):
        if path.parent == dest:
            _check_dest_entry(path, dest)
    folders = [video_dir(dest, s) for s in records]
    folders += sorted({t.dst.parent for t in tasks if t.dst.parent not in folders})
    for folder in folders:
        with _writing(folder):
            for parent in reversed([folder, *folder.parents]):
                if parent in dest.parents or parent == dest:
                    continue
                _check_dest_entry(parent, dest)
                if not os.path.lexists(parent):
                    parent.mkdir()
                elif not parent.is_dir():
                    raise PrepareError(f"{parent} is in the way: a folder is expected there, it was left as it "
                                       f"is: check it and move it away yourself, or choose another destination")


def _execute(tasks, settings, workers, summary: Summary, dest: Path | None, show_progress: bool) -> None:
    journal_path = dest / JOURNAL_NAME if dest else None
    known = _read_journal(dest) if dest else {}
    todo = []
    foreign: list[str] = []  # files under a clip's final name that this tool cannot have written
    for task in tasks:
        key = (task.split, task.record.name)
        if task.dst is None or not os.path.lexists(task.dst):
            todo.append(task)
            continue
        mode = os.lstat(task.dst).st_mode
        if not stat.S_ISREG(mode):
            foreign.append(f"{task.dst} ({'a symbolic link' if stat.S_ISLNK(mode) else 'not a regular file'})")
            continue
        info = known.get(key)
        if info is None or info.bytes != task.dst.stat().st_size:
            # Renamed into place but not journalled before a kill: the file is whole, describe it.
            try:
                info = probe_clip(task.dst, task.split, task.record.name)
            except DecodeError as err:
                foreign.append(f"{task.dst} (cannot be read as a video: {' '.join(err.reason.split())})")
                continue
        summary.infos[key] = info
        summary.skipped += 1
    if foreign:
        more = f"; {len(foreign) - 1} more such files" if len(foreign) > 1 else ""
        raise PrepareError(f"{foreign[0]} is already in the destination under a listed clip's name{more}. A clip "
                           f"this tool finished is always a whole, readable video file, so this one was put there "
                           f"or changed by something else. It was left as it is: check it and move it out of "
                           f"{dest} yourself, or choose another destination; then rerun")
    journal = None
    if journal_path is not None:
        with _writing(journal_path):
            journal = journal_path.open("a", encoding="utf-8")
    fatal: list[str] = []

    def on_outcome(outcome: Outcome, final: bool = False) -> None:
        key = (outcome.task.split, outcome.task.record.name)
        rec = outcome.task.record
        where = f"{outcome.task.list_file}:{rec.line}"
        if outcome.fatal:
            fatal.append(outcome.fatal)
            if not final:
                raise PrepareError(outcome.fatal)
            return
        if outcome.problem:
            summary.problems.append(f"{where}: {outcome.task.src}: {outcome.problem}")
            return
        summary.infos[key] = outcome.info
        summary.done += 1
        if journal is not None:
            # A clip that is not journalled is probed again by the next run; nothing is lost.
            with _writing(journal_path):
                journal.write(json.dumps(asdict(outcome.info)) + "\n")
                journal.flush()

    label = "verifying" if dest is None else f"transcoding ({summary.skipped} already done)"
    finished = False
    try:
        _run_tasks(todo, settings, workers, on_outcome, label, show_progress)
        finished = True
    finally:
        if journal is not None:
            try:
                with _writing(journal_path):
                    journal.close()
            except PrepareError:
                if finished:
                    raise


def _write_layout(dest: Path, records, summary: Summary, names) -> None:
    """Manifest and class names, then the lists last: until the lists exist, DEST is not a dataset the
    loader would read, so a run stopped in here (a full disk) leaves no half-described dataset."""
    infos, lists = [], {}
    for split, recs in records.items():
        kept = [(r.name, r.label) for r in recs if (split, r.name) in summary.infos]
        if len(kept) < len(recs):
            summary.notes.append(f"{split}: {len(recs) - len(kept)} unreadable or missing clips left out of "
                                 f"the destination list (--drop-unreadable)")
        lists[split] = kept
        infos.extend(summary.infos[(split, n)] for n, _ in kept)
    write_manifest(dest / MANIFEST_NAME, infos)
    names = names or list(MA52.classes)
    _write_atomic(dest / "label_name.txt", "".join(f"{i}\t{n}\n" for i, n in enumerate(names)))
    tmp_root = dest / f".lists{PART_TAG}{os.getpid()}"
    try:
        tmp_root.mkdir(exist_ok=True)
        for split, kept in lists.items():
            write_lists(tmp_root, split, kept)
            os.replace(list_path(tmp_root, split), list_path(dest, split))
    finally:
        if tmp_root.is_dir():  # this run's own folder; it holds at most the list file being written
            shutil.rmtree(tmp_root, ignore_errors=True)
    summary.wrote_layout = True


def _write_report(path: Path, source: Path, dest: Path | None, summary: Summary, names) -> None:
    names = names or list(MA52.classes)
    lines = ["MA-52 preparation report", f"source: {source}", f"destination: {dest or '(verify only)'}", ""]
    lines.append(f"PROBLEMS ({len(summary.problems)})" if summary.problems else "PROBLEMS: none")
    lines += [f"  {p}" for p in summary.problems]
    lines += ["", "NOTES"] + [f"  {n}" for n in summary.notes] if summary.notes else []
    splits = list(summary.counts)
    lines += ["", "CLIPS PER SPLIT"] + [f"  {s}: {sum(summary.counts[s].values())}" for s in splits]
    if splits:
        published = MA52.train_counts
        header = "  id  " + "".join(f"{s:>7}" for s in splits) + ("  published_train" if "train" in splits else "")
        lines += ["", "CLIPS PER CLASS", header]
        for c in range(MA52.num_classes):
            row = f"  {c:>2}  " + "".join(f"{summary.counts[s][c]:>7}" for s in splits)
            if "train" in splits:
                row += f"  {published[c]:>15}"
            lines.append(row + f"  {names[c]}")
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, "\n".join(lines) + "\n")
    summary.notes.append(f"report: {path}")


def _default_workers() -> int:
    cpus = usable_cpus()
    return max(1, cpus)
