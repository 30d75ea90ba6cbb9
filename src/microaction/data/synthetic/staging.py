"""Making a generated dataset appear whole or not at all.

A generator builds the dataset in a sibling temporary folder and moves it into
place at the end, with a marker file that says it is finished; a later run finds
the marker and reuses the dataset instead of writing it again.
"""

from __future__ import annotations

import json
import os
import shutil
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from ..annotations import SPLITS, video_dir

COMPLETE_MARKER = ".microaction-complete"


def is_complete(root: str | Path) -> bool:
    return (Path(root) / COMPLETE_MARKER).is_file()


class StagingDir:
    """Build a dataset in a sibling temporary folder and move it into place at
    the end, so an interrupted generation never looks like a finished one."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.tmp = self.root.with_name(f".{self.root.name}.partial-{os.getpid()}")

    def __enter__(self) -> Path:
        if self.root.exists() and any(self.root.iterdir()):
            raise FileExistsError(
                f"{self.root} exists and is not a finished generated dataset "
                f"(no {COMPLETE_MARKER}); refusing to overwrite it"
            )
        shutil.rmtree(self.tmp, ignore_errors=True)
        for split in SPLITS:
            video_dir(self.tmp, split).mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        (self.tmp / COMPLETE_MARKER).write_text("ok\n")
        if self.root.exists():
            self.root.rmdir()
        os.replace(self.tmp, self.root)


def check_same_arguments(root: Path, arguments: dict, meta_file: str, kind: str) -> None:
    """A finished dataset at ``root`` is reused only if ``root/meta_file`` records the same ``arguments``;
    ``kind`` names the generator in the refusal of a dataset it did not write."""
    meta = root / meta_file
    if not meta.is_file():
        raise FileExistsError(f"{root} holds a finished dataset that is not {kind} (no {meta_file})")
    stored = json.loads(meta.read_text()).get("arguments", {})
    diff = {k: (stored.get(k), v) for k, v in arguments.items() if stored.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: {a!r} there, {b!r} asked" for k, (a, b) in diff.items())
        raise ValueError(f"{root} was generated with other arguments ({detail}); "
                         f"delete it or point data.root elsewhere")


def run_jobs(work: Callable, jobs: list, workers: int, progress: bool, title: str, chunksize: int = 4) -> None:
    """``work(job)`` for every job (it returns the units done, for the progress bar), in ``workers``
    processes (spawned: the caller may already hold torch or loader threads)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(title, total=len(jobs))
        if workers == 1:
            for job in jobs:
                bar.advance(task, work(job))
            return
        with get_context("spawn").Pool(workers) as pool:
            for done in pool.imap_unordered(work, jobs, chunksize=chunksize):
                bar.advance(task, done)
