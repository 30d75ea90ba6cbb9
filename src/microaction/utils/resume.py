"""What a resumed run needs beyond Lightning's checkpoint: the random-number state, so it continues
the draws of the run it replaces, the metrics its folder already holds, and its checkpoint bookkeeping
when the run folder has moved.

Lightning's checkpoints hold weights, optimizer, schedulers, loop progress and callback states,
but not the RNG streams that pick the next epoch's clip order, crops and dropout masks; without
them a run resumed at an epoch boundary takes a different path from one never interrupted.
"""

from __future__ import annotations

import csv
import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

log = logging.getLogger(__name__)


def _numpy_state_to_plain(state: tuple) -> tuple:
    kind, key, pos, has_gauss, gauss = state
    return (str(kind), [int(k) for k in key], int(pos), int(has_gauss), float(gauss))


class RNGStateCheckpoint(L.Callback):
    """Saves the Python, NumPy, torch (and CUDA) generators with each checkpoint; restores them on resume.

    The state saved is rank 0's (Lightning writes checkpoints from rank 0); other ranks get it too,
    which is harmless since DistributedSampler derives each rank's order from a shared seed and epoch.
    """

    @property
    def state_key(self) -> str:
        return "RNGStateCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        state = {
            "python": random.getstate(),
            # plain Python values: checkpoints are loaded with torch.load(weights_only=True)
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        kind, key, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that a ``metrics.csv`` already in the folder is continued."""

    def _check_log_dir_exists(self) -> None:
        # Lightning deletes the file here. Keep it and carry on with its columns, in its order; a new
        # column rewrites the header with every row kept (Lightning's own mechanism).
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            text = file.read()
        self.metrics_keys = next(csv.reader(text.splitlines()[:1]), [])
        if text and not text.endswith("\n"):
            # a process killed in the middle of a row: end that row, so the next starts on its own line
            with self._fs.open(self.metrics_file_path, "a", newline="") as file:
                file.write("\r\n")


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to the ``metrics.csv`` already in its folder instead of deleting it.

    A run resumed in its own folder (``ckpt_path=auto|last``) logs into the same ``csv/metrics.csv``
    as the run it continues: every row written before the stop stays, the resumed run's rows follow.
    Steps logged after the last checkpoint and before the stop appear twice (the later row is the
    resumed run's). The trainer saves the file after every logging call, so a killed run loses no row
    it logged.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose record of the best checkpoints survives the run folder being moved.

    The checkpoint state names its files by absolute path. Resumed from a folder that was copied or moved
    (``hydra.run.dir=<new place>``, a cluster's scratch mounted elsewhere), Lightning's own callback keeps the
    old ``best_model_path`` and forgets the best score: the run then evaluates a file of the old folder (or
    fails once that is gone), and its next validation becomes "best" whatever its score. This one keeps the
    scores and looks every file of the old folder up under the same name in the new one. A file the new folder
    lacks but the old one still holds (a run continued in a new folder, ``ckpt_path=<old run>/.../last.ckpt``)
    keeps its old path: it stays a candidate for best, and Lightning never deletes a file outside its own folder.
    A file neither folder holds stops the resume before training, naming it.

    The state key is ``ModelCheckpoint``'s, so checkpoints written with either class resume with the other.
    """

    @property
    def state_key(self) -> str:
        key = super().state_key
        return "ModelCheckpoint" + key[len(type(self).__qualname__):]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and Path(old) != Path(self.dirpath):
            state_dict = moved_checkpoint_state(state_dict, Path(old), Path(self.dirpath))
        super().load_state_dict(state_dict)


def moved_checkpoint_state(state: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """A ``ModelCheckpoint`` state written in folder ``old``, for a callback writing into ``new``: each file of
    ``old`` recorded is taken from ``new`` under the same name where ``new`` holds it (the folder moved), else
    left in ``old`` where ``old`` still holds it (the run continues in a new folder); files elsewhere stay as
    they are. Raises FileNotFoundError naming a recorded best checkpoint that neither folder holds."""

    def move(path: Any) -> Any:
        if not path or Path(path).parent != old:
            return path
        moved = new / Path(path).name
        return str(moved) if moved.is_file() or not Path(path).is_file() else path

    moved = dict(state, dirpath=str(new))
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            moved[key] = move(state[key])
    moved["best_k_models"] = {move(path): score for path, score in (state.get("best_k_models") or {}).items()}
    for path in (moved.get("best_model_path"), *moved["best_k_models"]):
        if path and not Path(path).is_file():
            raise FileNotFoundError(
                f"resuming in another run folder: the checkpoint records {Path(path).name} (written in {old}), "
                f"which neither that folder nor {new} holds; copy it into {new}, or start anew with ckpt_path=null")
    if (old, new) not in _MOVES_LOGGED:  # once, not for each callback and each restore (validate, test)
        _MOVES_LOGGED.add((old, new))
        kept = [path for path in (moved.get("best_model_path"), *moved["best_k_models"])
                if path and Path(path).parent == old]
        log.info("checkpoint records written in %s continue in %s%s", old, new,
                 f" ({len(kept)} best checkpoint(s) kept where they are, in {old})" if kept else "")
    return moved


_MOVES_LOGGED: set[tuple[Path, Path]] = set()
