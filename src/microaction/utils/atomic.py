"""Files written whole or not at all: a reader never sees half a file, a failed write leaves the old file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | Path, tag: str = ".part-", newline: str | None = None) -> Iterator[IO[str]]:
    """A UTF-8 text file open for writing under a temporary name beside ``path`` (``.<name><tag><pid>``);
    when the block completes it is synced and renamed to ``path``. The temporary file never stays behind,
    whatever happens in the block. Missing folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{tag}{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str, tag: str = ".part-", newline: str | None = None) -> Path:
    """``text`` into ``path`` through ``atomic_open``."""
    with atomic_open(path, tag, newline) as f:
        f.write(text)
    return Path(path)


def save_figure(fig, path: str | Path, tag: str = ".part-", **savefig_kwargs) -> Path:
    """A matplotlib figure saved as a PNG at ``path``: written under a temporary name beside it, then renamed
    (a reader never sees half a picture; the temporary file never stays behind). Missing folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{tag}{os.getpid()}")
    try:
        fig.savefig(tmp, format="png", **savefig_kwargs)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path
