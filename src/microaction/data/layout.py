"""Writing the official MA-52 layout's text files: the list files and ``label_name.txt``.

The counterpart of ``annotations`` (which reads them). Used by every writer of a
dataset: ``prepare`` (the cache of a real release) and the synthetic generators.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..labels import LabelSpace
from .annotations import list_path


def write_lists(root: Path, split: str, entries: Iterable[tuple[str, int]]) -> None:
    lines = [f"{name} {label}" for name, label in entries]
    # The release's last line has no trailing newline; mirror it.
    list_path(root, split).write_text("\n".join(lines))


def write_label_names(root: Path, label_space: LabelSpace | None = None) -> None:
    """``label_name.txt`` of ``label_space`` (None: MA-52's packaged names)."""
    names = (label_space or LabelSpace.ma52()).classes
    (root / "label_name.txt").write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(names)))
