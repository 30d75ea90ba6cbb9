"""Writing a dataset in the official MA-52 layout (shared by the generators)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from ..classes import class_table
from .annotations import list_path, video_dir

COMPLETE_MARKER = ".microaction-complete"


def is_complete(root: str | Path) -> bool:
    return (Path(root) / COMPLETE_MARKER).is_file()


def write_lists(root: Path, split: str, entries: Iterable[tuple[str, int]]) -> None:
    lines = [f"{name} {label}" for name, label in entries]
    # The release's last line has no trailing newline; mirror it.
    list_path(root, split).write_text("\n".join(lines))


def write_label_names(root: Path) -> None:
    names = class_table().fine_names
    (root / "label_name.txt").write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(names)))


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
        for split in ("train", "val", "test"):
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
