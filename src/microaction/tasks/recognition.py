"""Single-label micro-action recognition (MANet, TSM, TSN, ...) as a LightningModule."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch
from torchmetrics import MaxMetric, Metric

from .. import reports
from ..embeddings import load_label_embeddings
from ..labels import LabelSpace
from ..metrics import METRIC_KEYS, MA52Metrics
from ..models import create_model
from .losses import LabelEmbeddingLoss

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


def label_space_of(label_space: LabelSpace | Mapping | None, num_classes: int | None = None) -> LabelSpace:
    """The task's label space from its hyperparameters.

    Checkpoints written before label spaces carry ``num_classes`` and no ``label_space``: 52 (all
    of them that this package wrote) converts to MA-52's label space; any other count is refused
    with the way to convert the file.
    """
    if label_space is not None:
        space = LabelSpace.from_dict(label_space, "hyper_parameters.label_space")
        if num_classes is not None and num_classes != space.num_classes:
            raise ValueError(f"num_classes={num_classes} but label space {space.name!r} has {space.num_classes} classes")
        return space
    ma52 = LabelSpace.ma52()
    if num_classes is None or num_classes == ma52.num_classes:
        if num_classes is not None:
            log.info("hyperparameters of a checkpoint written before label spaces (num_classes=%d): "
                     "converted to MA-52's label space", num_classes)
        return ma52
    raise ValueError(
        f"hyperparameters with num_classes={num_classes} and no label_space (written before label spaces): only "
        f"MA-52's {ma52.num_classes} classes convert by themselves. Convert the checkpoint by giving it its label "
        "space: ckpt = torch.load(path, weights_only=True); ckpt['hyper_parameters']['label_space'] = "
        "microaction.labels.LabelSpace(name=..., classes=[...], coarse_classes=[...], fine_to_coarse=[...]).to_dict(); "
        "del ckpt['hyper_parameters']['num_classes']; torch.save(ckpt, new_path)"
    )


class MicroActionRecognition(L.LightningModule):
    """Wraps a registry model with the label-embedding loss and MA-52 metrics.

    ``model`` and ``loss`` are plain dicts and ``label_space`` a ``LabelSpace`` (or its ``to_dict()``),
    all saved in the checkpoint as plain data, so ``load_from_checkpoint(path)`` rebuilds the task
    without the data. The label space sizes the classifier, the label-embedding matrix and the metrics
    and names the classes in reports; it must be single-label (its ``extra`` label sets are not
    predicted). ``optimizer`` and ``scheduler`` are partials that take params / the optimizer.
    ``num_classes`` is read only from checkpoints written before label spaces (``label_space_of``).

    The frames per clip are the network's (``model.num_segments``, set from ``data.num_segments``);
    a batch whose clips have another count is refused with both values.

    ``predict_step`` returns per-clip rows (see there); ``write_predictions``, ``write_submission``
    and ``prior_prediction`` turn them into files for ``callbacks.PredictionWriter``.
    """

    # what validate/test log per split (``<split>/<key>``) that a run reports as its metrics
    metric_keys = (*METRIC_KEYS, "num_clips")

    def __init__(
        self,
        model: dict,
        loss: dict | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        no_decay_norm_bias: bool = True,
        label_space: LabelSpace | dict | None = None,
        num_classes: int | None = None,
    ):
        super().__init__()
        space = label_space_of(label_space, num_classes)
        if space.multi_label:
            raise ValueError(f"label space {space.name!r} is multi-label: MicroActionRecognition predicts one class "
                             "per clip; a multi-label task is needed")
        self.save_hyperparameters({"model": model, "loss": loss, "no_decay_norm_bias": no_decay_norm_bias,
                                   "label_space": space.to_dict()})
        self.label_space = space
        loss = dict(loss or {})
        embeddings = load_label_embeddings(loss.pop("embeddings", None), space)
        model = dict(model)
        if model.get("embed_dim") is None:
            model["embed_dim"] = embeddings.shape[1]
        elif model["embed_dim"] != embeddings.shape[1]:
            raise ValueError(
                f"model.embed_dim={model['embed_dim']} but the label embedding matrix has {embeddings.shape[1]} columns"
            )
        self.net = create_model(num_classes=space.num_classes, **model)
        self.criterion = LabelEmbeddingLoss(embeddings, **loss)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # One metric object per stage (a ModuleDict cannot hold the key "train").
        self.train_metrics = MA52Metrics(space)
        self.val_metrics = MA52Metrics(space)
        self.test_metrics = MA52Metrics(space)
        self.val_best = MaxMetric()
        self.train_clips, self.val_clips, self.test_clips = ClipCounts(), ClipCounts(), ClipCounts()
        self.predict_clips = ClipCounts()
        # This rank's skipped and partly decoded clips: {"name", "status": "skipped"|"partial", "detail"};
        # val/test/predict per epoch, train over the whole fit (each clip once).
        self.decode_issues: dict[str, list[dict]] = {s: [] for s in STAGES}
        # At most this fraction of the clips a stage ran may be skipped; None: the attached datamodule's
        # data.max_skipped_fraction (no limit without a datamodule).
        self.max_skipped_fraction: float | None = None

    @property
    def num_segments(self) -> int | None:
        """Frames per clip the network takes (it was built with ``model.num_segments``), None if unknown."""
        frames = getattr(self.net, "num_segments", None)
        return int(frames) if frames is not None else self.hparams["model"].get("num_segments")

    def _metrics(self, stage: str) -> MA52Metrics:
        return getattr(self, f"{stage}_metrics")

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        frames = self.num_segments
        if frames is not None and video.ndim == 5 and video.shape[1] != frames:
            raise ValueError(
                f"the batch's clips have {video.shape[1]} frames (data.num_segments) but the network was built for "
                f"{frames} (model.num_segments): data.num_segments must be the network's"
            )
        return self.net(video)

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
        """Loss and metrics of a labelled batch; a batch without labels (hidden test labels) is only counted."""
        self._count_skipped(stage, batch)
        if "video" not in batch or "label" not in batch:
            return
        out = self(batch["video"])
        scores = out["logits"].float()
        losses = self.criterion(out, batch["label"])
        self.log(f"{stage}/loss", losses["loss"], on_epoch=True, batch_size=scores.shape[0], sync_dist=True)
        self._metrics(stage).update(scores, batch["label"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        """One row per clip of the batch: ``{"name", "label" (None when the split's labels are hidden),
        "topk", "topk_prob" (the 5 most probable fine classes, softmax), "status", "detail"}``; status is
        "" or "partial" (decoded in part, ``detail`` says how far). A clip skipped as undecodable is
        ``{"name", "status": "skipped", "detail": reason}``."""
        self._count_skipped("predict", batch)
        notes = batch.get("decode_notes") or {}
        rows = [{"name": n, "status": "skipped", "detail": notes.get(n, "")} for n in batch.get("skipped", ())]
        if "video" not in batch:
            return rows
        scores = self(batch["video"])["logits"].float()
        top = scores.softmax(1).topk(min(5, scores.shape[1]), dim=1)
        labels = batch.get("label")
        partial = set(batch.get("partial", ()))
        for i, name in enumerate(batch["name"]):
            rows.append({
                "name": name,
                "label": None if labels is None else int(labels[i]),
                "topk": top.indices[i].tolist(),
                "topk_prob": top.values[i].tolist(),
                "status": "partial" if name in partial else "",
                "detail": notes.get(name, "") if name in partial else "",
            })
        return rows

    # --- files from predictions (callbacks.PredictionWriter) ---------------------------
    def write_predictions(self, path: Path, rows: Sequence[dict]) -> Path:
        """predictions_<split>.csv: per clip the target, the top-5 classes with probabilities, body parts."""
        return reports.write_predictions_csv(path, rows, self.label_space)

    def write_submission(self, path: Path, rows: Sequence[dict]) -> Path:
        """The benchmark server's file (one row per clip: top-5 fine classes, then their body parts)."""
        return reports.write_submission_csv(path, rows, self.label_space)

    def prior_prediction(self, name: str, class_order: Sequence[int]) -> dict:
        """The row of a clip the model never saw: the first classes of ``class_order`` (the training prior)."""
        return {"name": name, "label": None, "topk": list(class_order)[:5], "topk_prob": None,
                "status": "skipped", "detail": ""}

    def confusion_matrices(self, stage: str) -> dict[str, torch.Tensor] | None:
        """The last ``stage`` epoch's fine and coarse confusion matrices over all ranks (a collective call
        under DDP), None for a stage without metrics."""
        if stage not in ("train", "val", "test"):
            return None
        return self._metrics(stage).confusion()

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
        values = self._metrics(stage).compute()  # synchronised across ranks
        if values["num_clips"] == 0:
            return {}
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage == "val")
        return values

    def on_train_epoch_start(self) -> None:
        self.train_metrics.reset()
        self.train_clips.reset()

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        values = self._log_metrics("val")
        if values and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.val_best(values["F1_mean"])
            self.log("val/F1_mean_best", self.val_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def on_predict_epoch_end(self) -> None:
        # before the prediction writer writes anything (its on_predict_end comes after this hook)
        self._log_skipped("predict")

    # Metrics reset when an epoch starts, not when it ends, so the last epoch's
    # confusion matrix stays available to reports after validate()/test().
    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()
        self.decode_issues["val"] = []
        self.val_clips.reset()

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()
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
