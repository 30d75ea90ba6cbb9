"""Reading files that may come from someone else: checkpoints, weight files, label matrices.

A PyTorch file is a pickle, and unpickling can call any importable function. Every such file
is read with ``torch.load(..., weights_only=True)``, which accepts only tensors and plain
values (dicts, lists, numbers, strings) and refuses anything else before it runs. The torch
floor of this package predates that default, so it is passed explicitly.

A checkpoint's stored hyperparameters are data too: ``find_targets`` lists the Hydra
``_target_`` keys in them, so eval.py can refuse a checkpoint that names what to build.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class UnsafeFileError(ValueError):
    """A file whose unpickling would import or call something other than tensors and plain values."""


def load_torch_file(path: str | Path, key: str, *, mmap: bool = False) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors that name ``key``.

    ``key`` is the setting the path came from (``ckpt_path``, ``model.pretrained``, ...).
    A missing file raises FileNotFoundError; a file that would run code when unpickled raises
    UnsafeFileError; an unreadable one (truncated, not a PyTorch file) raises ValueError.
    ``mmap=True`` maps tensor storages instead of reading them (for a cheap safety check of a
    large checkpoint); files in the old, non-zip format are then read whole.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: no such file")
    use_mmap = mmap and zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        if found:
            raise UnsafeFileError(
                f"{key}={path}: refused: unpickling this file would import `{found.group(1)}`, i.e. run code "
                "stored in the file. Only tensors and plain values are loaded (torch.load weights_only=True), "
                "and nothing in this package loads a file otherwise. If you trust the file, load it yourself "
                "and save only its tensors (torch.save(obj['state_dict'], 'weights.pt'))."
            ) from None
        raise ValueError(
            f"{key}={path}: not loaded: not a PyTorch file of tensors and plain values "
            f"(corrupt, or pickled with other objects): {_first_line(err)}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        # the unpickler reads any bytes as opcodes: a text file fails as a KeyError, IndexError or ValueError
        raise ValueError(f"{key}={path}: not loaded: not a readable PyTorch file (truncated or corrupt?): "
                         f"{_first_line(err) or type(err).__name__}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def find_targets(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every ``_target_`` inside ``obj`` (dicts and lists, any depth)."""
    found: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if k == "_target_":
                found.append((key, v))
            else:
                found.extend(find_targets(v, key))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found.extend(find_targets(v, f"{prefix}[{i}]"))
    return found
