"""Verify a downloaded MA-52 release and transcode it into a small, fast cache.

``python scripts/prepare_ma52.py SOURCE DEST`` checks every list line of SOURCE
(file present, clip decodes completely, label in range), then writes DEST in the
official layout with every clip scaled to ``--short-side`` (256), re-encoded as
H.264 with a short keyframe interval and no audio, plus ``manifest.csv`` (frame
count, fps, duration, size per clip) which the datamodule reads instead of
counting frames itself. Without DEST it only verifies.

Safety on a shared server: every output is written under a hidden temporary
name and renamed when complete, so a clip under its final name is always whole;
a rerun skips finished clips; a full disk stops the run with nothing
half-written; the list files (what makes DEST usable) are written last, only
when every clip is ready; a lock stops two runs from sharing one DEST.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import sys
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from ..classes import NUM_FINE, class_table
from .annotations import SPLITS, AnnotationError, ClipRecord, list_path, read_label_names, read_list, video_dir
from .layout import write_lists
from .manifest import MANIFEST_NAME, ClipInfo, probe_clip, write_manifest

EXPECTED_COUNTS = {"train": 11250, "val": 5586, "test": 5586}
SETTINGS_NAME = ".prepare-settings.json"
JOURNAL_NAME = ".prepare-journal.jsonl"
LOCK_NAME = ".prepare.lock"
REPORT_NAME = "prepare_report.txt"
PART_TAG = ".part-"


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
    src: Path
    dst: Path | None  # None: verify only


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


class ClipProblem(Exception):
    pass


def cache_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale so the short side is ``short_side`` (never up), both sides even for yuv420p."""
    short = min(width, height)
    scale = min(1.0, short_side / short)

    def even(x: float) -> int:
        return max(2, int(round(x / 2)) * 2)

    return even(width * scale), even(height * scale)


def read_source(path: Path, short_side: int | None):
    """Decode every frame of the video stream (scaled to the cache size when asked).

    Returns (frames, time_base, average_rate, width, height, packet count). A clip
    is a problem when it has no video stream, or when fewer frames decode than it
    has packets: a cache made from it would silently miss frames.
    """
    try:
        if path.stat().st_size == 0:
            raise ClipProblem("empty file (0 bytes)")
        with av.open(str(path)) as container:
            if not container.streams:
                raise ClipProblem("no streams found (truncated, or not a video file)")
            if not container.streams.video:
                kinds = ", ".join(s.type for s in container.streams)
                raise ClipProblem(f"no video stream (streams: {kinds})")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            size = None
            frames, packets, damaged = [], 0, 0
            for packet in container.demux(stream):
                if packet.size:
                    packets += 1
                try:
                    decoded = packet.decode()
                except av.InvalidDataError:
                    damaged += 1
                    continue
                for frame in decoded:
                    if short_side is None:
                        frames.append(None)  # only counted
                        continue
                    if size is None:
                        size = cache_size(frame.width, frame.height, short_side)
                    small = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                    small.pts, small.time_base = frame.pts, frame.time_base
                    frames.append(small)
            tb, rate = stream.time_base, stream.average_rate
            width, height = stream.codec_context.width, stream.codec_context.height
    except ClipProblem:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        raise ClipProblem(f"cannot decode: {type(err).__name__}: {err}") from None
    if packets == 0:
        raise ClipProblem("video stream has no packets")
    if len(frames) < packets:
        raise ClipProblem(f"only {len(frames)} of {packets} frames decode (damaged or truncated)"
                          + (f", {damaged} packets rejected" if damaged else ""))
    return frames, tb, rate, width, height, packets


def encode_clip(tmp: Path, frames, time_base, rate, settings: EncodeSettings) -> None:
    """Write ``frames`` (yuv420p VideoFrames) to ``tmp`` as H.264 MP4, no audio."""
    pts = [f.pts for f in frames]
    keep_times = time_base is not None and all(p is not None for p in pts) and all(
        a < b for a, b in zip(pts, pts[1:]))
    fps = rate if rate else Fraction(30)
    with av.open(str(tmp), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].width, frames[0].height
        stream.pix_fmt = "yuv420p"
        # Source timestamps are kept so a variable-frame-rate clip stays one.
        stream.codec_context.time_base = time_base if keep_times else 1 / Fraction(fps)
        stream.codec_context.thread_count = 1
        options = {"crf": str(settings.crf), "preset": settings.preset, "g": str(settings.gop),
                   "keyint_min": str(settings.gop), "sc_threshold": "0", "bf": "0"}
        if settings.tune:
            options["tune"] = settings.tune
        stream.options = options
        for i, frame in enumerate(frames):
            if not keep_times:
                frame.pts, frame.time_base = i, stream.codec_context.time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_clip(task: Task, settings: EncodeSettings) -> Outcome:
    """Verify one clip and, with a destination, transcode it (temporary name, then rename)."""
    try:
        frames, tb, rate, width, height, packets = read_source(
            task.src, None if task.dst is None else settings.short_side)
    except ClipProblem as err:
        return Outcome(task, problem=str(err))
    if task.dst is None:
        info = probe_clip(task.src, task.split, task.record.name)
        return Outcome(task, info=info)
    tmp = task.dst.with_name(f".{task.dst.name}{PART_TAG}{os.getpid()}")
    try:
        encode_clip(tmp, frames, tb, rate, settings)
        info = probe_clip(tmp, task.split, task.record.name)
        if info.frames != len(frames):
            raise PrepareError(f"{tmp}: wrote {len(frames)} frames but {info.frames} came back")
        _fsync(tmp)
        os.replace(tmp, task.dst)
    except Exception as err:  # noqa: BLE001 - any failure to write is the destination's: stop
        return Outcome(task, fatal=_describe_write_error(task.dst, err))
    finally:
        tmp.unlink(missing_ok=True)
    return Outcome(task, info=info)


def _describe_write_error(dst: Path, err: Exception) -> str:
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"the destination is full (writing {dst}: {err}). Nothing half-written was left; "
                f"free space (the cache needs about 1/10 of the release) and rerun the same command: "
                f"finished clips are kept and skipped")
    return f"cannot write {dst}: {type(err).__name__}: {err}"


# --- the run ------------------------------------------------------------------------------


def _read_lists(source: Path, splits, summary: Summary) -> dict[str, list[ClipRecord]]:
    records: dict[str, list[ClipRecord]] = {}
    for split in splits:
        try:
            records[split] = read_list(list_path(source, split), NUM_FINE)
        except (AnnotationError, FileNotFoundError) as err:
            summary.problems.append(str(err).splitlines()[0])
            continue
        summary.counts[split] = Counter(r.label for r in records[split])
        expected = EXPECTED_COUNTS[split]
        if len(records[split]) != expected:
            summary.notes.append(f"{split}: {len(records[split])} clips listed, the full release has {expected} "
                                 f"(fine for a subset)")
    return records


def _label_names(source: Path, summary: Summary) -> list[str] | None:
    path = source / "label_name.txt"
    if not path.is_file():
        summary.notes.append(f"{path} absent: the destination gets the package's class names")
        return None
    try:
        return read_label_names(path, NUM_FINE)
    except (AnnotationError, UnicodeDecodeError) as err:
        summary.problems.append(str(err))
        return None


class _Lock:
    """An exclusive lock on DEST, released by the kernel if the process dies."""

    def __init__(self, dest: Path):
        self.path = dest / LOCK_NAME

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise PrepareError(f"another prepare_ma52 run is using {self.path.parent}; wait for it or use "
                               f"another destination") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _check_settings(dest: Path, settings: EncodeSettings) -> None:
    path = dest / SETTINGS_NAME
    wanted = asdict(settings)
    if path.is_file():
        have = json.loads(path.read_text())
        if have != wanted:
            diff = ", ".join(f"{k}: {have.get(k)!r} there, {v!r} asked" for k, v in wanted.items() if have.get(k) != v)
            raise PrepareError(f"{dest} was prepared with other settings ({diff}); rerun with the same settings "
                               f"or choose a new destination, so one cache never mixes two encodings")
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(wanted, indent=1) + "\n")
    os.replace(tmp, path)


def _remove_stale_parts(dest: Path, splits) -> int:
    # Left by a run that was killed mid-write; the lock guarantees no live run owns them.
    n = 0
    for split in splits:
        folder = video_dir(dest, split)
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name.startswith(".") and PART_TAG in p.name:
                    p.unlink()
                    n += 1
    return n


def _read_journal(dest: Path) -> dict[tuple[str, str], ClipInfo]:
    path = dest / JOURNAL_NAME
    out: dict[tuple[str, str], ClipInfo] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
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
        with ProcessPoolExecutor(max_workers=workers) as pool:
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
) -> Summary:
    """Verify ``source`` and (with ``dest``) build the cache. Raises PrepareError to stop."""
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
    workers = _default_workers() if workers is None else workers
    summary = Summary()
    records = _read_lists(source, splits, summary)
    names = _label_names(source, summary)

    tasks: list[Task] = []
    for split, recs in records.items():
        folder = video_dir(source, split)
        for rec in recs:
            src = folder / rec.name
            if not src.is_file():
                summary.problems.append(f"{list_path(source, split)}:{rec.line}: missing file {src}")
                continue
            tasks.append(Task(split, rec, src, None if dest is None else video_dir(dest, split) / rec.name))

    report_path = Path(report) if report else (dest / REPORT_NAME if dest else Path.cwd() / "ma52_verify_report.txt")
    if dest is None:
        _execute(tasks, settings, workers, summary, None, show_progress)
    else:
        dest.mkdir(parents=True, exist_ok=True)
        with _Lock(dest):
            _check_settings(dest, settings)
            for split in records:
                video_dir(dest, split).mkdir(exist_ok=True)
            stale = _remove_stale_parts(dest, records)
            if stale:
                summary.notes.append(f"removed {stale} temporary files left by an interrupted run")
            try:
                _execute(tasks, settings, workers, summary, dest, show_progress)
                if summary.ok or drop_unreadable:
                    _write_layout(dest, records, summary, names)
            finally:
                _write_report(report_path, source, dest, summary, names)
        return summary
    _write_report(report_path, source, dest, summary, names)
    return summary


def _execute(tasks, settings, workers, summary: Summary, dest: Path | None, show_progress: bool) -> None:
    journal_path = dest / JOURNAL_NAME if dest else None
    known = _read_journal(dest) if dest else {}
    todo = []
    for task in tasks:
        key = (task.split, task.record.name)
        if task.dst is not None and task.dst.is_file():
            info = known.get(key)
            if info is None or info.bytes != task.dst.stat().st_size:
                # Renamed into place but not journalled before a kill: the file is whole, describe it.
                try:
                    info = probe_clip(task.dst, task.split, task.record.name)
                except (av.FFmpegError, OSError, ValueError) as err:
                    raise PrepareError(f"{task.dst} exists but cannot be read ({err}); it was not written by "
                                       f"this tool: remove it and rerun") from None
            summary.infos[key] = info
            summary.skipped += 1
        else:
            todo.append(task)
    journal = journal_path.open("a") if journal_path else None
    fatal: list[str] = []

    def on_outcome(outcome: Outcome, final: bool = False) -> None:
        key = (outcome.task.split, outcome.task.record.name)
        rec = outcome.task.record
        where = f"{list_path(outcome.task.src.parent.parent, outcome.task.split)}:{rec.line}"
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
            journal.write(json.dumps(asdict(outcome.info)) + "\n")
            journal.flush()

    label = "verifying" if dest is None else f"transcoding ({summary.skipped} already done)"
    try:
        _run_tasks(todo, settings, workers, on_outcome, label, show_progress)
    finally:
        if journal is not None:
            journal.close()


def _write_layout(dest: Path, records, summary: Summary, names) -> None:
    """Lists and manifest last: until they exist, DEST is not a dataset the loader would read."""
    infos = []
    for split, recs in records.items():
        kept = [(r.name, r.label) for r in recs if (split, r.name) in summary.infos]
        if len(kept) < len(recs):
            summary.notes.append(f"{split}: {len(recs) - len(kept)} unreadable or missing clips left out of the "
                                 f"destination list (--drop-unreadable)")
        tmp_root = dest / f".lists{PART_TAG}{os.getpid()}"
        tmp_root.mkdir(exist_ok=True)
        write_lists(tmp_root, split, kept)
        os.replace(list_path(tmp_root, split), list_path(dest, split))
        tmp_root.rmdir()
        infos.extend(summary.infos[(split, n)] for n, _ in kept)
    names = names or list(class_table().fine_names)
    tmp = dest / f".label_name.txt{PART_TAG}{os.getpid()}"
    tmp.write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(names)))
    os.replace(tmp, dest / "label_name.txt")
    write_manifest(dest / MANIFEST_NAME, infos)
    summary.wrote_layout = True


def _write_report(path: Path, source: Path, dest: Path | None, summary: Summary, names) -> None:
    names = names or list(class_table().fine_names)
    lines = ["MA-52 preparation report", f"source: {source}", f"destination: {dest or '(verify only)'}", ""]
    lines.append(f"PROBLEMS ({len(summary.problems)})" if summary.problems else "PROBLEMS: none")
    lines += [f"  {p}" for p in summary.problems]
    lines += ["", "NOTES"] + [f"  {n}" for n in summary.notes] if summary.notes else []
    splits = list(summary.counts)
    lines += ["", "CLIPS PER SPLIT"] + [f"  {s}: {sum(summary.counts[s].values())}" for s in splits]
    if splits:
        published = class_table().train_counts
        header = "  id  " + "".join(f"{s:>7}" for s in splits) + ("  published_train" if "train" in splits else "")
        lines += ["", "CLIPS PER CLASS", header]
        for c in range(NUM_FINE):
            row = f"  {c:>2}  " + "".join(f"{summary.counts[s][c]:>7}" for s in splits)
            if "train" in splits:
                row += f"  {published[c]:>15}"
            lines.append(row + f"  {names[c]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{PART_TAG}{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    summary.notes.append(f"report: {path}")


def _default_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus)


# --- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prepare_ma52",
        description="Verify an MA-52 release and transcode it to a small cache in the official layout.",
    )
    p.add_argument("source", help="the downloaded release root (list files, videos_train/ ...)")
    p.add_argument("dest", nargs="?", help="where to write the cache; omit to only verify")
    p.add_argument("--short-side", type=int, default=256, help="short side of the cached clips (default 256)")
    p.add_argument("--gop", type=int, default=16, help="keyframe interval in frames (default 16)")
    p.add_argument("--crf", type=int, default=23, help="x264 quality, lower is better (default 23)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    p.add_argument("--tune", default=None, help="x264 tune, e.g. fastdecode (default none)")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    p.add_argument("--workers", type=int, default=None, help="processes (default: the CPU count)")
    p.add_argument("--drop-unreadable", action="store_true",
                   help="write the destination lists without the unreadable or missing clips (they stay in the report)")
    p.add_argument("--report", default=None, help="report file (default DEST/prepare_report.txt)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = EncodeSettings(args.short_side, args.gop, args.crf, args.preset, args.tune)
    try:
        summary = prepare(args.source, args.dest, settings, splits=args.splits, workers=args.workers,
                          drop_unreadable=args.drop_unreadable, report=args.report,
                          show_progress=not args.no_progress)
    except PrepareError as err:
        print(f"prepare_ma52: stopped: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prepare_ma52: interrupted; rerun the same command to continue (finished clips are kept)",
              file=sys.stderr)
        return 130
    out = sys.stdout if summary.ok else sys.stderr
    print(f"prepare_ma52: {summary.done} clips processed, {summary.skipped} already done, "
          f"{len(summary.problems)} problems", file=out)
    for note in summary.notes:
        print(f"  note: {note}", file=out)
    for problem in summary.problems[:20]:
        print(f"  problem: {problem}", file=out)
    if len(summary.problems) > 20:
        print(f"  ... and {len(summary.problems) - 20} more (see the report)", file=out)
    if not summary.ok:
        if args.dest and not summary.wrote_layout:
            print("  the destination lists were NOT written: fix the source and rerun (finished clips are kept), "
                  "or rerun with --drop-unreadable to leave these clips out", file=out)
        return 1
    if args.dest:
        print(f"  ready: train with data.root={Path(args.dest).expanduser().resolve()}", file=out)
    return 0
