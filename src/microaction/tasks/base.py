"""What every task (LightningModule) of the package shares around its network and metrics.

``ClipTask`` counts the clips each stage skipped as undecodable or decoded only in part (summed over
ranks, logged per epoch, refused beyond ``data.max_skipped_fraction``), resets and logs the task's
metrics per stage, tracks the best validation value of ``best_key``, records what the checkpoint was
built from, and builds the optimizer and schedule from their config partials. A task implements the
steps, ``reset_metrics(stage)`` and ``compute_metrics(stage)`` (a dict with ``num_clips``), and sets
``metric_keys`` (what a run reports) and ``best_key``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import lightning as L
import torch
from torchmetrics import MaxMetric, Metric

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test", "predict")


class SkippedClipsError(RuntimeError):
    """More clips of a split were skipped as undecodable than ``data.max_skipped_fraction`` allows."""


class ClipCounts(Metric):
    """Clips of one stage and epoch: skipped as undecodable, decoded only in part, delivered in a batch
    (scored or predicted). Summed over ranks by ``compute()``."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("skipped", "partial", "delivered"):
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, skipped: int, partial: int, delivered: int) -> None:
        self.skipped += skipped
        self.partial += partial
        self.delivered += delivered

    def compute(self) -> dict[str, int]:
        return {"skipped": int(self.skipped), "partial": int(self.partial), "delivered": int(self.delivered)}


class ClipTask(L.LightningModule):
    """The shared part of a task; see the module docstring."""

    # what validate/test log per split (``<split>/<key>``) that a run reports as its metrics
    metric_keys: tuple[str, ...] = ()
    # the validation metric whose best value is logged as ``val/<best_key>_best``
    best_key: str = ""

    def init_task(self, optimizer: Callable[..., torch.optim.Optimizer] | None, scheduler: Callable[..., Any] | None) -> None:
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_best = MaxMetric()
        self.train_clips, self.val_clips, self.test_clips = ClipCounts(), ClipCounts(), ClipCounts()
        self.predict_clips = ClipCounts()
        # This rank's skipped and partly decoded clips: {"name", "status": "skipped"|"partial", "detail"};
        # val/test/predict per epoch, train over the whole fit (each clip once).
        self.decode_issues: dict[str, list[dict]] = {s: [] for s in STAGES}
        # At most this fraction of the clips a stage ran may be skipped; None: the attached datamodule's
        # data.max_skipped_fraction (no limit without a datamodule).
        self.max_skipped_fraction: float | None = None

    def reset_metrics(self, stage: str) -> None:
        raise NotImplementedError

    def compute_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """The stage's metrics over all ranks (a collective call), with ``num_clips``."""
        raise NotImplementedError

    # --- steps -----------------------------------------------------------------------
    def _count_skipped(self, stage: str, batch: dict) -> None:
        # Summed by a metric and reduced in the epoch-end hook, on every rank at the same point. A
        # sync_dist log would be reduced lazily, first by the progress bar on rank 0 alone, and under
        # DDP that all-reduce would pair with another rank's metric all-gather: a deadlock.
        delivered = len(batch["name"]) if "video" in batch else 0
        getattr(self, f"{stage}_clips").update(int(batch.get("num_skipped", 0)), len(batch.get("partial", ())), delivered)
        notes = batch.get("decode_notes") or {}
        issues = self.decode_issues.setdefault(stage, [])
        known = {i["name"] for i in issues} if stage == "train" else ()
        for status in ("skipped", "partial"):
            for name in batch.get(status, ()):
                if name not in known:
                    issues.append({"name": name, "status": status, "detail": notes.get(name, "")})

    # --- epoch ends ------------------------------------------------------------------
    def _skip_limit(self) -> float | None:
        if self.max_skipped_fraction is not None:
            return float(self.max_skipped_fraction)
        dm = self._trainer.datamodule if self._trainer is not None else None
        hparams = getattr(dm, "hparams", None) or {}
        value = hparams.get("max_skipped_fraction")
        return None if value is None else float(value)

    def _split_name(self, stage: str) -> str:
        """The data split a stage runs on: its own name, or for predict the datamodule's ``predict_split``."""
        if stage != "predict":
            return stage
        dm = self._trainer.datamodule if self._trainer is not None else None
        return str(getattr(dm, "predict_split", "predict"))

    def _log_skipped(self, stage: str) -> None:
        """Log the epoch's skipped and partly decoded clips (not while predicting, where Lightning has no
        logging); stop when more were skipped than allowed."""
        counter = getattr(self, f"{stage}_clips")
        if counter.update_called:
            counts = counter.compute()  # synchronised across ranks: every rank sees the same totals
            skipped = counts["skipped"]
            if stage != "predict":
                self.log(f"{stage}/skipped_clips", float(skipped))
                self.log(f"{stage}/partial_clips", float(counts["partial"]))
            limit = self._skip_limit()
            ran = skipped + counts["delivered"]
            sanity = self._trainer is not None and self.trainer.sanity_checking
            if limit is not None and ran and skipped > limit * ran and not sanity:
                self._refuse_skipped(stage, skipped, ran, limit)
        counter.reset()

    def _refuse_skipped(self, stage: str, skipped: int, ran: int, limit: float) -> None:
        from ..utils import distributed

        # every rank gets here with the same totals, so the gather pairs up across ranks
        names = [i["name"] for i in distributed.gather_predictions(self.decode_issues.get(stage, []))
                 if i["status"] == "skipped"]
        shown = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
        raise SkippedClipsError(
            f"split {self._split_name(stage)}: {skipped} of {ran} clips were skipped as undecodable ({100 * skipped / ran:.2f}%), "
            f"more than data.max_skipped_fraction={limit:g} allows: {shown}. Repair or re-download them "
            f"(scripts/prepare_ma52.py names every damaged file), or raise data.max_skipped_fraction."
        )

    def _log_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        self._log_skipped(stage)
        values = self.compute_metrics(stage)  # synchronised across ranks
        if values["num_clips"] == 0:
            return {}
        # the progress bar shows the loss and the validation value of ``best_key``; every metric is logged
        for k, v in values.items():
            self.log(f"{stage}/{k}", v, prog_bar=stage == "val" and k == self.best_key)
        return values

    def on_train_epoch_start(self) -> None:
        self.reset_metrics("train")
        self.train_clips.reset()

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        values = self._log_metrics("val")
        if values and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.val_best(values[self.best_key])
            self.log(f"val/{self.best_key}_best", self.val_best.compute())

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def on_predict_epoch_end(self) -> None:
        # before the prediction writer writes anything (its on_predict_end comes after this hook)
        self._log_skipped("predict")

    # Metrics reset when an epoch starts, not when it ends, so the last epoch's
    # confusion matrix stays available to reports after validate()/test().
    def on_validation_epoch_start(self) -> None:
        self.reset_metrics("val")
        self.decode_issues["val"] = []
        self.val_clips.reset()

    def on_test_epoch_start(self) -> None:
        self.reset_metrics("test")
        self.decode_issues["test"] = []
        self.test_clips.reset()

    def on_predict_epoch_start(self) -> None:
        self.decode_issues["predict"] = []
        self.predict_clips.reset()

    # what eval.py builds from this module's checkpoints: the registered names of the task and datamodule
    # (microaction.registry's allow-list), set by whoever built them (the pipeline)
    built_from: dict | None = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.built_from:
            checkpoint["built_from"] = dict(self.built_from)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A network wrapped by torch.compile(net) saves its keys as "net._orig_mod.*"; accept those
        # checkpoints too (this package compiles in place, which keeps the plain keys).
        state = checkpoint.get("state_dict", {})
        if any("._orig_mod." in k for k in state):
            checkpoint["state_dict"] = {k.replace("._orig_mod.", "."): v for k, v in state.items()}

    # --- optimisation ----------------------------------------------------------------
    def optimised_parameters(self):
        """The parameters the optimizer updates (those that require a gradient)."""
        return self.parameters()

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        decay, no_decay = [], []
        for p in self.optimised_parameters():
            if not p.requires_grad:
                continue
            # Norm scales/shifts and biases are 1-D; decaying them only hurts.
            (no_decay if self.hparams.no_decay_norm_bias and p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise RuntimeError("no optimizer configured: pass optimizer= (a partial) to train")
        wd = getattr(self.optimizer_factory, "keywords", {}).get("weight_decay", 0.0)
        optimizer = self.optimizer_factory(params=self.parameter_groups(wd))
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer), "interval": "epoch"},
        }
