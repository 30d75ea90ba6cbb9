"""Callbacks that turn an evaluation into files: per-clip predictions and confusion matrices.

``PredictionWriter`` writes what a task's ``predict_step`` returns; ``ConfusionMatrixPlots`` draws a
task's confusion matrices after ``trainer.validate``/``trainer.test``. Both are rank-safe under DDP:
every rank takes part in gathering (collective calls), rank 0 alone writes.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from . import reports
from .ensemble import write_logits
from .utils import distributed

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    """Writes the per-clip rows ``predict_step`` returns, for the split the datamodule predicts.

    A row is a dict with the clip's ``name``; ``status`` ``"skipped"`` (with ``detail``: why) marks a
    clip that could not be decoded and was not predicted, ``"partial"`` one decoded only in part. Each
    rank keeps its rows; when predicting ends they are gathered in rank order (each clip once) and
    rank 0 writes into ``out_dir``:

    - ``predictions_<split>.csv``: the predicted rows, by the task's ``write_predictions(path, rows)``
      (without one: a column per row key);
    - ``logits_<split>.npz`` when the rows carry ``logits`` (every class's score per clip, for ensembles:
      ``microaction.ensemble``, ``scripts/ensemble.py``);
    - ``decode_report_<split>.csv`` when a clip was skipped or partly decoded;
    - for a split in ``submission_splits``, ``submission_<split>.csv`` by the task's
      ``write_submission(path, rows)``: one row per listed clip, a skipped clip filled by the task's
      ``prior_prediction(name, class_order)`` with the datamodule's ``class_prior_order()``; no file
      when not every listed clip was run (``limit_predict_batches``, ``fast_dev_run``).

    The split is the datamodule's ``predict_split`` (else "predict"), its listed clips the datamodule's
    ``clip_list(split)`` (else the clips predicted). After each ``trainer.predict``, ``result`` holds,
    on every rank, the files written and the clip accounting (``reports.clip_accounting``).
    """

    def __init__(self, out_dir: str | Path, submission_splits: Sequence[str] = ("test",)):
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.submission_splits = tuple(submission_splits)
        self.result: dict[str, Any] | None = None
        self._rows: list[dict] = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []
        self.result = None

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self._rows.extend(prediction or [])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        split = str(getattr(dm, "predict_split", "predict"))
        rows = distributed.gather_predictions(self._rows)  # every rank's, in rank order (= list order)
        self._rows = []
        predicted = [r for r in rows if r.get("status") != "skipped"]
        issues = [r for r in rows if r.get("status") in ("skipped", "partial")]
        listed = dm.clip_list(split) if hasattr(dm, "clip_list") else [(r["name"], None) for r in rows]
        clips = reports.clip_accounting(listed, len(predicted), issues)
        submission = (self._submission(split, rows, clips, listed, dm, pl_module)
                      if split in self.submission_splits else None)
        files: dict[str, str] = {}
        if trainer.is_global_zero:
            files = self._write(split, predicted, clips, submission, pl_module)
        self.result = {"split": split, "files": files, "clips": clips}

    def _submission(self, split: str, rows: list[dict], clips: dict, listed: list[tuple[str, Any]], dm,
                    pl_module) -> list[dict] | None:
        """One row per listed clip, or None (said in ``clips["submission"]``) when not every clip was run."""
        if not hasattr(pl_module, "write_submission"):
            return None
        if clips["not_run"]:
            clips["submission"] = (f"not written: {clips['not_run']} of {clips['listed']} listed {split} clips were not "
                                   f"run (trainer.limit_{split}_batches or fast_dev_run); a submission needs every clip")
            return None
        out = [r for r in rows if r.get("status") != "skipped"]
        if clips["skipped"]:
            order, source = dm.class_prior_order()
            filled = [pl_module.prior_prediction(c["video"], order) for c in clips["skipped_clips"]]
            out += filled
            clips["skipped_fill"] = f"classes {filled[0]['topk']}: the training-set prior ({source})"
        names = {name for name, _ in listed}
        if len(out) != len(names) or {r["name"] for r in out} != names:
            raise RuntimeError(f"submission rows ({len(out)}) do not match the {len(names)} listed {split} clips")
        return out

    def _write(self, split: str, predicted: list[dict], clips: dict, submission: list[dict] | None,
               pl_module) -> dict[str, str]:
        files: dict[str, str] = {}
        if clips["skipped"] or clips["partial"]:
            files["decode_report"] = str(reports.write_decode_report(self.out_dir / f"decode_report_{split}.csv", clips))
        for c in clips["skipped_clips"]:
            log.warning("%s: skipped undecodable clip %s (list line %s): %s", split, c["video"], c["line"], c["reason"])
        if predicted:
            path = self.out_dir / f"predictions_{split}.csv"
            writer = getattr(pl_module, "write_predictions", None) or write_rows_csv
            files["predictions"] = str(writer(path, predicted))
            if all("logits" in r for r in predicted):
                files["logits"] = str(write_logits(self.out_dir / f"logits_{split}.npz", predicted,
                                                   getattr(pl_module, "label_space", None)))
        if submission:
            files["submission"] = str(pl_module.write_submission(self.out_dir / f"submission_{split}.csv", submission))
        elif clips.get("submission"):
            log.warning("submission_%s.csv %s", split, clips["submission"])
        return files


def write_rows_csv(path: Path, rows: Sequence[dict]) -> Path:
    """Rows of any keys as a CSV, one column per key (in first-seen order); lists joined by spaces."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([" ".join(map(str, v)) if isinstance(v, (list, tuple)) else ("" if v is None else v)
                        for v in (r.get(c) for c in columns)])
    return path


class ConfusionMatrixPlots(Callback):
    """After ``trainer.validate``/``trainer.test`` (not the validation inside ``fit``), the task's
    ``confusion_matrices(stage)`` as row-normalised PNGs in ``out_dir``: ``confusion_fine_<stage>.png``
    and ``confusion_body_<stage>.png``, named by the task's ``label_space``; a task with
    ``evaluation_reports(stage, out_dir, write)`` writes its own files instead. ``files[stage]`` holds
    their paths and ``matrices[stage]`` the matrices drawn (``fine``, ``coarse``: numpy arrays), on rank 0."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.files: dict[str, dict[str, str]] = {}
        self.matrices: dict[str, dict[str, Any]] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._plot(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._plot(trainer, pl_module, "test")

    def _plot(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.files.pop(stage, None)
        self.matrices.pop(stage, None)
        reports_of = getattr(pl_module, "evaluation_reports", None)
        if reports_of is not None:  # a task that draws its own (collective: every rank calls it)
            files = reports_of(stage, self.out_dir, trainer.is_global_zero)
            if files:
                self.files[stage] = files
            return
        get = getattr(pl_module, "confusion_matrices", None)
        matrices = get(stage) if get is not None else None  # collective: every rank calls it
        if not matrices or int(matrices["fine"].sum()) == 0 or not trainer.is_global_zero:
            return
        space = pl_module.label_space
        self.matrices[stage] = {k: matrices[k].cpu().numpy() for k in ("fine", "coarse")}
        self.files[stage] = {
            "confusion_fine": str(reports.plot_confusion(
                self.matrices[stage]["fine"], [f"{i} {n}" for i, n in enumerate(space.classes)],
                self.out_dir / f"confusion_fine_{stage}.png", f"{stage}: fine micro-actions (row-normalised)")),
            "confusion_body": str(reports.plot_confusion(
                self.matrices[stage]["coarse"], list(space.coarse_classes),
                self.out_dir / f"confusion_body_{stage}.png", f"{stage}: body parts (row-normalised)")),
        }
