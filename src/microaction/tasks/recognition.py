"""Single-label micro-action recognition (MANet, TSM, TSN, ...) as a LightningModule."""

from __future__ import annotations

import logging
from typing import Any, Callable

import lightning as L
import torch
from torchmetrics import MaxMetric, SumMetric

from ..classes import NUM_FINE
from ..embeddings import load_label_embeddings
from ..metrics import MA52Metrics
from ..models import create_model
from .losses import LabelEmbeddingLoss

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


class MicroActionRecognition(L.LightningModule):
    """Wraps a registry model with the label-embedding loss and MA-52 metrics.

    ``model`` and ``loss`` are plain dicts (saved in the checkpoint, so
    ``load_from_checkpoint(path)`` rebuilds the network alone); ``optimizer`` and
    ``scheduler`` are partials that take params / the optimizer.
    """

    def __init__(
        self,
        model: dict,
        loss: dict | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        no_decay_norm_bias: bool = True,
        num_classes: int = NUM_FINE,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        loss = dict(loss or {})
        embeddings = load_label_embeddings(loss.pop("embeddings", None), num_classes=num_classes)
        model = dict(model)
        if model.get("embed_dim") is None:
            model["embed_dim"] = embeddings.shape[1]
        elif model["embed_dim"] != embeddings.shape[1]:
            raise ValueError(
                f"model.embed_dim={model['embed_dim']} but the label embedding matrix has {embeddings.shape[1]} columns"
            )
        self.net = create_model(num_classes=num_classes, **model)
        self.criterion = LabelEmbeddingLoss(embeddings, **loss)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # One metric object per stage (a ModuleDict cannot hold the key "train").
        self.train_metrics = MA52Metrics(num_classes)
        self.val_metrics = MA52Metrics(num_classes)
        self.test_metrics = MA52Metrics(num_classes)
        self.val_best = MaxMetric()
        self.train_skipped, self.val_skipped, self.test_skipped = SumMetric(), SumMetric(), SumMetric()
        self.score_test = True
        self.predictions: dict[str, list[dict]] = {}

    def stage_metrics(self, stage: str) -> MA52Metrics:
        return getattr(self, f"{stage}_metrics")

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(video)

    # --- steps -----------------------------------------------------------------------
    def _count_skipped(self, stage: str, batch: dict) -> None:
        # Summed by a metric and reduced in the epoch-end hook, on every rank at the same point. A
        # sync_dist log would be reduced lazily, first by the progress bar on rank 0 alone, and under
        # DDP that all-reduce would pair with another rank's metric all-gather: a deadlock.
        getattr(self, f"{stage}_skipped").update(float(batch.get("num_skipped", 0)))

    def training_step(self, batch: dict, batch_idx: int):
        self._count_skipped("train", batch)
        if "video" not in batch:
            return None
        out = self(batch["video"])
        losses = self.criterion(out, batch["label"])
        n = batch["label"].shape[0]
        for k, v in losses.items():
            self.log(f"train/{k}", v, on_step=k == "loss", on_epoch=True, prog_bar=k == "loss", batch_size=n)
        self.train_metrics.update(out["logits"].detach(), batch["label"])
        return losses["loss"]

    def _eval_step(self, stage: str, batch: dict) -> None:
        self._count_skipped(stage, batch)
        if "video" not in batch:
            return
        out = self(batch["video"])
        scores = out["logits"].float()
        scored = stage != "test" or self.score_test
        if scored:
            losses = self.criterion(out, batch["label"])
            self.log(f"{stage}/loss", losses["loss"], on_epoch=True, batch_size=scores.shape[0], sync_dist=True)
            self.stage_metrics(stage).update(scores, batch["label"])
        if stage in self.predictions:
            top = scores.softmax(1).topk(min(5, scores.shape[1]), dim=1)
            for i in range(scores.shape[0]):
                self.predictions[stage].append(
                    {
                        "name": batch["name"][i],
                        "label": int(batch["label"][i]) if scored else None,
                        "topk": top.indices[i].tolist(),
                        "topk_prob": top.values[i].tolist(),
                    }
                )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    # --- epoch ends ------------------------------------------------------------------
    def _log_skipped(self, stage: str) -> None:
        counter = getattr(self, f"{stage}_skipped")
        if counter.update_called:
            self.log(f"{stage}/skipped_clips", counter.compute())  # synchronised across ranks
        counter.reset()

    def _log_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        self._log_skipped(stage)
        values = self.stage_metrics(stage).compute()  # synchronised across ranks
        if values["num_clips"] == 0:
            return {}
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage == "val")
        return values

    def on_train_epoch_start(self) -> None:
        self.train_metrics.reset()

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        values = self._log_metrics("val")
        if values and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.val_best(values["F1_mean"])
            self.log("val/F1_mean_best", self.val_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        if self.score_test:
            self._log_metrics("test")
        else:
            self._log_skipped("test")

    # Metrics reset when an epoch starts, not when it ends, so the last epoch's
    # confusion matrix stays available to reports after validate()/test().
    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A network wrapped by torch.compile(net) saves its keys as "net._orig_mod.*"; accept those
        # checkpoints too (this package compiles in place, which keeps the plain keys).
        state = checkpoint.get("state_dict", {})
        if any("._orig_mod." in k for k in state):
            checkpoint["state_dict"] = {k.replace("._orig_mod.", "."): v for k, v in state.items()}

    # --- optimisation ----------------------------------------------------------------
    def parameter_groups(self, weight_decay: float) -> list[dict]:
        decay, no_decay = [], []
        for p in self.net.parameters():
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
