"""Making a generated dataset appear whole or not at all.

A generator builds the dataset in a sibling temporary folder and moves it into
place at the end, with a marker file that says it is finished; a later run finds
the marker and reuses the dataset instead of writing it again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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
