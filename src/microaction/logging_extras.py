"""What a run shows beyond Lightning's curves: the config once, the final evaluation as evaluation, its
figures and tables, and a log a person can read.

``RunLogs`` is made by ``pipeline.train``/``pipeline.evaluate`` for the run's loggers:

- ``start()``: the resolved config, once and nested, with the job's command-line overrides
  (``overrides``), to every logger (Lightning's own copies of the task's and datamodule's
  hyperparameters, which would put their keys at the top level a second time, are switched off by
  ``quiet_lightning_hparams``). W&B also gets ``define_metric(<optimized_metric>, summary="max")``, so the
  run's summary holds the best value rather than the last, and the run id is kept in ``<run>/wandb_run_id``:
  a job resumed in its folder (``ckpt_path=auto``) continues the same W&B run (``resume_wandb_id``).
  TensorBoard gets an HParams session whose metrics are the optimized metric's curve, its best value and the
  final evaluation's value.
- ``detached(trainer)`` / ``evaluation(...)``: the final ``trainer.validate``/``trainer.test`` of the best
  checkpoint runs with no logger attached (Lightning would log it as one more epoch at the last step: a
  phantom point on every curve); its metrics are then logged as ``eval/<split>/<metric>``: a CSV row and
  TensorBoard scalars at the last training step without an ``epoch``, and W&B summary values.
- ``reports(...)``: the confusion matrices (PNG images; in W&B also interactive confusion charts from the
  per-clip predictions), the per-class F1 (class, body part, training count, support, F1) as a W&B table and
  TensorBoard text, the metric table (one row per split), and in W&B the per-clip predictions as a table.

``EpochLines`` writes one log line per training epoch with its metrics (in ``train.log`` and on the console);
``quiet_lightning_console`` leaves Lightning's messages to the job's handlers (Lightning adds a console
handler of its own, so each line was printed twice); ``log_to_files`` writes text to the job's log files only.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id"
EVAL_PREFIX = "eval"


# --- the job's console and log file -----------------------------------------------------------------------------

def _is_console(handler: logging.Handler) -> bool:
    return (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and getattr(handler, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__))


def quiet_lightning_console() -> None:
    """When the root logger prints to the console (Hydra's job logging), remove the console handlers
    Lightning attaches to its own loggers, so that each of its messages is printed once, by the job's
    handlers (and written to ``train.log`` with them)."""
    if not any(_is_console(h) for h in logging.getLogger().handlers):
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if _is_console(h)]:
            logger.removeHandler(handler)
        logger.propagate = True


def log_to_files(text: str, logger: logging.Logger = log, level: int = logging.INFO) -> int:
    """Write ``text`` as one record to the log files of the root logger (Hydra's ``<run>/<job>.log``),
    not to the console; returns the number of files written."""
    record = logger.makeRecord(logger.name, level, __file__, 0, "%s", (text,), None)
    written = 0
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and level >= handler.level:
            handler.handle(record)
            written += 1
    return written


def plain_metric_table(table: Any, width: int = 120) -> str:
    """A rich renderable (``reports.metric_table``) as plain text."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(table)
    return buffer.getvalue().rstrip()


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value


def _fmt(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.3e}"


class EpochLines(L.Callback):
    """One log line per training epoch: ``epoch 3/15 (step 120): train/loss 1.234 | ... | val/F1_mean 0.41``.

    Lightning calls a callback's ``on_train_epoch_end`` before the task logs its epoch metrics, so an epoch's
    line is written when the next epoch starts, and the last one's when training ends. Validation values
    are those of the same epoch (none in an epoch without validation); per-step values (``*_step``) are
    left out. Rank 0 writes.
    """

    def __init__(self) -> None:
        self._pending: int | None = None
        self._val: dict[str, float] = {}
        self._val_epoch: int | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)
        self._pending = trainer.current_epoch

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._val = {k: v for k, v in self._metrics(trainer).items() if k.startswith("val/")}
            self._val_epoch = trainer.current_epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    @staticmethod
    def _metrics(trainer: L.Trainer) -> dict[str, float]:
        out = {}
        for key, value in trainer.callback_metrics.items():
            number = _number(value)
            if number is not None and not key.endswith("_step"):
                out[key.removesuffix("_epoch")] = number
        return out

    def _flush(self, trainer: L.Trainer) -> None:
        epoch, self._pending = self._pending, None
        if epoch is None or not trainer.is_global_zero:
            return
        metrics = {k: v for k, v in self._metrics(trainer).items() if not k.startswith("val/")}
        if self._val_epoch == epoch:
            metrics.update(self._val)
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        log.info("epoch %d/%s (step %d) | %s", epoch, total, trainer.global_step, epoch_text(metrics))


# counts said only when not zero (clips skipped or partly decoded), or not at all (clips scored)
_QUIET_KEYS = {"skipped_clips", "partial_clips"}
_HIDDEN_KEYS = {"num_clips"}


def epoch_text(metrics: Mapping[str, float]) -> str:
    """``train: loss 1.23, F1_mean 0.12 | val: loss 1.5, F1_mean 0.2 (best 0.25) | lr-AdamW/pg1 0.001``:
    grouped by stage, losses first; ``<key>_best`` shown beside ``<key>``."""
    groups: dict[str, dict[str, float]] = {}
    other: dict[str, float] = {}
    for key, value in metrics.items():
        stage, sep, name = key.partition("/")
        if sep and stage in ("train", "val"):
            groups.setdefault(stage, {})[name] = value
        else:
            other[key] = value
    parts = []
    for stage in ("train", "val"):
        values = groups.get(stage, {})
        cells = []
        for name in sorted(values, key=lambda n: (not n.startswith("loss"), n)):
            value = values[name]
            if name in _HIDDEN_KEYS or (name in _QUIET_KEYS and value == 0):
                continue
            if name.endswith("_best") and name.removesuffix("_best") in values:
                continue
            best = values.get(f"{name}_best")
            cells.append(f"{name} {_fmt(value)}" + (f" (best {_fmt(best)})" if best is not None else ""))
        if cells:
            parts.append(f"{stage}: " + ", ".join(cells))
    parts += [f"{k} {_fmt(v)}" for k, v in sorted(other.items())]
    return " | ".join(parts) or "no metrics"


# --- the loggers --------------------------------------------------------------------------------------------

def task_overrides() -> list[str]:
    """The job's command-line overrides (Hydra's task overrides; in a sweep, with the job's swept values)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return [str(o) for o in HydraConfig.get().overrides.task]
    except (ImportError, ValueError):
        return []


def resume_wandb_id(out_dir: Path) -> str | None:
    """The W&B run id a job in ``out_dir`` wrote (``<out_dir>/wandb_run_id``), None without one."""
    path = Path(out_dir) / WANDB_ID_FILE
    if not path.is_file():
        return None
    text = path.read_text().strip()
    return text or None


def quiet_lightning_hparams(*objects: Any) -> None:
    """Switch off Lightning's logging of the task's and datamodule's hyperparameters at ``fit``
    (``save_hyperparameters(logger=False)`` would say the same): the run's config, which holds them,
    is logged once by ``RunLogs.start``. They are still saved in the checkpoint."""
    for obj in objects:
        if obj is not None and hasattr(obj, "_log_hyperparams"):
            obj._log_hyperparams = False


def _kind(logger: Any) -> str:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        return "wandb"
    if isinstance(logger, TensorBoardLogger):
        return "tensorboard"
    if isinstance(logger, CSVLogger):
        return "csv"
    return "other"


def _cell(text: str) -> Any:
    """A CSV cell as the table shows it: empty as None, numbers as numbers."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_rows(path: Path) -> tuple[list[str], list[list[Any]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], [[_cell(c) for c in r] for r in rows[1:]]) if rows else ([], [])


def per_class_f1(confusion: Any, label_space: Any, train_counts: Sequence[int] | None) -> list[list[Any]]:
    """Rows ``[class id, class, body part, training clips, support, F1]`` from a fine confusion matrix
    ``cm[target, pred]``; F1 = 2 TP / (support + predicted), None for a class neither true nor predicted."""
    import numpy as np

    cm = np.asarray(confusion, dtype=np.float64)
    tp, support, predicted = cm.diagonal(), cm.sum(1), cm.sum(0)
    rows = []
    for c, name in enumerate(label_space.classes):
        denom = support[c] + predicted[c]
        rows.append([c, name, label_space.coarse_classes[label_space.fine_to_coarse[c]],
                     None if train_counts is None else int(train_counts[c]), int(support[c]),
                     None if denom == 0 else float(2 * tp[c] / denom)])
    return rows


PER_CLASS_COLUMNS = ["class_id", "class", "body_part", "train_clips", "support", "F1"]


def training_counts(dm: Any, label_space: Any) -> list[int] | None:
    """Training clips per fine class: those of the datamodule's training list, else the label space's
    published counts, else None."""
    try:
        path = dm.list_file("train") if getattr(dm, "root", None) is not None else None
        if "train" in getattr(dm, "datasets", {}) or (path is not None and Path(path).is_file()):
            counts = Counter(int(c) for c in dm.train_labels())
            return [counts.get(c, 0) for c in range(label_space.num_classes)]
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        pass
    counts = getattr(label_space, "train_counts", None)
    return list(counts) if counts is not None else None


class RunLogs:
    """The run's loggers as the pipeline uses them (see the module docstring). Every method may be called
    on every rank; only rank 0 writes."""

    def __init__(self, loggers: Sequence[Any], cfg: DictConfig, out_dir: Path, keep_wandb_id: bool = False):
        self.loggers = list(loggers)
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        # train.py's jobs keep their W&B run id for a resumed job; eval.py's do not (an evaluation written
        # into a training run's folder must not become the run that training continues)
        self.keep_wandb_id = keep_wandb_id
        self.metric = str(cfg.get("optimized_metric") or "")
        mode = OmegaConf.select(cfg, "callbacks.model_checkpoint.mode", default="max")
        self.mode = "min" if mode == "min" else "max"

    def of(self, kind: str) -> list[Any]:
        return [lg for lg in self.loggers if _kind(lg) == kind]

    # --- start ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """The config once per logger; W&B's metric summaries and run id; TensorBoard's HParams session."""
        if rank_zero_only.rank != 0 or not self.loggers:
            return
        params = OmegaConf.to_container(self.cfg, resolve=True)
        params["overrides"] = task_overrides()
        for lg in self.loggers:
            kind = _kind(lg)
            if kind == "wandb":
                self._start_wandb(lg, params)
            elif kind == "tensorboard":
                self._start_tensorboard(lg, params)
            else:
                lg.log_hyperparams(params)

    def _start_wandb(self, lg: Any, params: dict) -> None:
        run = lg.experiment
        run.config.update(params, allow_val_change=True)
        if self.metric:
            # keeps Lightning's x-axis for the key (its glob definition is replaced by this one)
            run.define_metric(self.metric, step_metric="trainer/global_step", summary=self.mode)
        if self.keep_wandb_id:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / WANDB_ID_FILE).write_text(f"{run.id}\n")
        log.info("W&B run %s (%s)", run.id, getattr(run, "name", ""))

    def _hparam_metrics(self) -> list[str]:
        if not self.metric:
            return []
        split, _, key = self.metric.partition("/")
        best = f"{self.metric}_best" if split == "val" else None
        return [m for m in (self.metric, best, f"{EVAL_PREFIX}/{self.metric}",
                            f"{EVAL_PREFIX}/test/{key}" if split == "val" and key else None) if m]

    def _start_tensorboard(self, lg: Any, params: dict) -> None:
        from lightning.fabric.utilities.logger import _flatten_dict
        from torch.utils.tensorboard.summary import hparams

        lg.log_hyperparams(params)  # hparams.yaml beside the event files
        metrics = self._hparam_metrics()
        if not metrics:
            return
        flat = lg._sanitize_params(_flatten_dict(dict(params)))
        flat = {k: v for k, v in flat.items() if isinstance(v, (bool, int, float, str))}
        exp, ssi, sei = hparams(flat, {m: 0.0 for m in metrics})
        writer = lg.experiment._get_file_writer()
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)
        lg.experiment.flush()

    # --- the final evaluation -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def detached(self, trainer: L.Trainer) -> Iterator[None]:
        """No logger while the final evaluation runs (``evaluation`` logs its metrics afterwards)."""
        attached = list(trainer.loggers)
        trainer.loggers = []
        try:
            yield
        finally:
            trainer.loggers = attached

    def evaluation(self, trainer: L.Trainer, split: str, logged: Mapping[str, Any]) -> dict[str, float]:
        """``logged`` (what ``trainer.validate``/``test`` returned for ``split``) as ``eval/<split>/...``:
        CSV and TensorBoard at the last training step, without an epoch; W&B in the run's summary."""
        values = {f"{EVAL_PREFIX}/{k}": float(v) for k, v in logged.items()
                  if k.startswith(f"{split}/") and _number(v) is not None}
        if not values or not trainer.is_global_zero:
            return values
        for lg in self.loggers:
            if _kind(lg) == "wandb":
                lg.experiment.summary.update(values)
            else:
                lg.log_metrics(values, step=trainer.global_step)
                lg.save()
        return values

    def log_checkpoints(self, trainer: L.Trainer) -> list[str]:
        """``logger.wandb.log_model=true`` (or ``all`` in an offline run): the best and the last checkpoint as
        versions of the ``model-<run id>`` artifact, aliased ``best``, and ``last`` and ``latest`` (one version
        with all three when they are one file). An offline run keeps them for `wandb sync`. Returns the files."""
        if rank_zero_only.rank != 0:
            return []
        loggers = [lg for lg in self.of("wandb") if getattr(lg, "microaction_log_model", False)]
        ckpt = trainer.checkpoint_callback
        if not loggers or ckpt is None:
            return []
        best = getattr(ckpt, "best_model_path", "")
        # the latest weights: the newest save_last file, or file of a callback that monitors nothing (last.ckpt)
        latest = []
        for cb in trainer.checkpoint_callbacks:
            latest.append(getattr(cb, "last_model_path", ""))
            if getattr(cb, "monitor", "") is None:
                latest.append(getattr(cb, "best_model_path", ""))
        latest = [p for p in latest if p and Path(p).is_file()]
        last = max(latest, key=lambda p: Path(p).stat().st_mtime_ns, default="")
        files: dict[str, list[str]] = {}
        for path, alias in ((best, "best"), (last, "last")):
            if path and Path(path).is_file():
                files.setdefault(str(Path(path).resolve()), []).append(alias)
        if not files:
            log.warning("W&B: logger.wandb.log_model is set but the run has no checkpoint file to log")
            return []
        import wandb

        for lg in loggers:
            run = lg.experiment
            # best first, then last: W&B gives "latest" to the version logged last
            for path, aliases in files.items():
                score = _number(getattr(ckpt, "best_model_score", None)) if "best" in aliases else None
                metadata = {"original_filename": Path(path).name, "score": score, "monitor": getattr(ckpt, "monitor", None)}
                artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=metadata)
                artifact.add_file(path, name="model.ckpt")
                run.log_artifact(artifact, aliases=aliases)
            log.info("W&B: checkpoint(s) %s logged as artifact model-%s (uploaded by `wandb sync`)",
                     ", ".join(Path(f).name for f in files), run.id)
        return list(files)

    def finish(self) -> None:
        """Flush and close the files of the loggers other than W&B after the evaluation's logging (the W&B
        run is finished by the pipeline)."""
        if rank_zero_only.rank != 0:
            return
        for lg in self.loggers:
            if _kind(lg) != "wandb":
                lg.finalize("success")

    # --- figures and tables ---------------------------------------------------------------------------------
    def reports(self, trainer: L.Trainer, module: L.LightningModule, dm: Any, splits: Mapping[str, Mapping],
                matrices: Mapping[str, Mapping[str, Any]]) -> None:
        """Figures and tables of the final evaluation. ``splits``: per split its ``metrics`` and ``files``
        (``_evaluate_split``'s result); ``matrices``: per split the fine confusion matrix
        (``ConfusionMatrixPlots.matrices``)."""
        if not trainer.is_global_zero or not self.loggers:
            return
        space = getattr(module, "label_space", None)
        counts = training_counts(dm, space) if space is not None and matrices else None
        per_class = {s: per_class_f1(m["fine"], space, counts) for s, m in matrices.items()
                     if space is not None and "fine" in m}
        table_keys = [k for k in getattr(module, "metric_keys", ()) if k != "num_clips"]
        metric_rows = [[s, *(r["metrics"].get(k) for k in table_keys)] for s, r in splits.items() if r.get("metrics")]
        for lg in self.loggers:
            kind = _kind(lg)
            try:
                if kind == "wandb":
                    self._wandb_reports(lg, trainer, space, splits, per_class, table_keys, metric_rows)
                elif kind == "tensorboard":
                    self._tensorboard_reports(lg, trainer, splits, per_class, table_keys, metric_rows)
            except Exception as err:  # the run's files are written; a logger that cannot take a figure is no reason to fail
                log.warning("%s: the final evaluation's figures and tables could not be logged: %s: %s",
                            kind, type(err).__name__, err)

    def _wandb_reports(self, lg, trainer, space, splits, per_class, table_keys, metric_rows) -> None:
        import wandb

        run = lg.experiment
        media: dict[str, Any] = {}
        for split, result in splits.items():
            files = result.get("files") or {}
            for name, path in files.items():
                if str(path).endswith(".png"):
                    media[f"{EVAL_PREFIX}/{split}/{name}"] = wandb.Image(str(path), caption=Path(path).name)
            if split in per_class:
                media[f"{EVAL_PREFIX}/{split}/per_class_F1"] = wandb.Table(columns=PER_CLASS_COLUMNS,
                                                                           data=per_class[split])
            predictions = files.get("predictions")
            if predictions and Path(predictions).is_file():
                header, rows = _read_rows(Path(predictions))
                media[f"{EVAL_PREFIX}/{split}/predictions"] = wandb.Table(columns=header, data=rows,
                                                                          allow_mixed_types=True)
                if space is not None and {"label", "pred", "body", "pred_body"} <= set(header):
                    media.update(self._wandb_confusion(split, header, rows, space))
        if metric_rows:
            media[f"{EVAL_PREFIX}/metrics"] = wandb.Table(columns=["split", *table_keys], data=metric_rows)
        if media:
            run.log({**media, "trainer/global_step": trainer.global_step})

    @staticmethod
    def _wandb_confusion(split: str, header: list[str], rows: list[list[str]], space: Any) -> dict[str, Any]:
        import wandb

        col = {c: i for i, c in enumerate(header)}
        scored = [r for r in rows if r[col["label"]] is not None]
        if not scored:
            return {}
        out = {}
        for name, true_key, pred_key, classes in (("fine", "label", "pred", space.classes),
                                                   ("body", "body", "pred_body", space.coarse_classes)):
            out[f"{EVAL_PREFIX}/{split}/confusion_{name}_chart"] = wandb.plot.confusion_matrix(
                y_true=[int(r[col[true_key]]) for r in scored], preds=[int(r[col[pred_key]]) for r in scored],
                class_names=list(classes), title=f"{split}: {'fine micro-actions' if name == 'fine' else 'body parts'}",
            )
        return out

    def _tensorboard_reports(self, lg, trainer, splits, per_class, table_keys, metric_rows) -> None:
        import matplotlib.image

        writer, step = lg.experiment, trainer.global_step
        for split, result in splits.items():
            for name, path in (result.get("files") or {}).items():
                if str(path).endswith(".png"):
                    image = matplotlib.image.imread(str(path))[..., :3]
                    writer.add_image(f"{EVAL_PREFIX}/{split}/{name}", image, step, dataformats="HWC")
            if split in per_class:
                writer.add_text(f"{EVAL_PREFIX}/{split}/per_class_F1",
                                _markdown(PER_CLASS_COLUMNS, per_class[split]), step)
        if metric_rows:
            writer.add_text(f"{EVAL_PREFIX}/metrics", _markdown(["split", *table_keys], metric_rows), step)
        writer.flush()


def _markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
