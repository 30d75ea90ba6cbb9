"""Single-label micro-action recognition (MANet, TSM, TSN, ...) as a LightningModule."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .. import reports
from ..embeddings import has_packaged_embeddings, load_label_embeddings
from ..labels import LabelSpace
from ..metrics import METRIC_KEYS, MA52Metrics
from ..models import create_model
from .base import ClipTask, SkippedClipsError  # noqa: F401  (SkippedClipsError: importable from here too)
from .losses import LabelEmbeddingLoss

log = logging.getLogger(__name__)


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


class MicroActionRecognition(ClipTask):
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

    metric_keys = (*METRIC_KEYS, "num_clips")
    metric_title = "MA-52 metrics (%)"
    best_key = "F1_mean"

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
        path = loss.pop("embeddings", None)
        model = dict(model)
        if path is None and float(loss.get("alpha", 5.0)) == 0 and not has_packaged_embeddings(space):
            # cross-entropy alone (loss=ce) on classes without a packaged matrix: no embedding branch at all
            embeddings = None
            if model.get("embed_dim") is not None:
                raise ValueError(f"model.embed_dim={model['embed_dim']}: loss.alpha=0 without loss.embeddings on "
                                 f"label space {space.name!r} builds no embedding branch; leave model.embed_dim null")
        else:
            embeddings = load_label_embeddings(path, space)
        if embeddings is not None and model.get("embed_dim") is None:
            model["embed_dim"] = embeddings.shape[1]
        elif embeddings is not None and model["embed_dim"] != embeddings.shape[1]:
            raise ValueError(
                f"model.embed_dim={model['embed_dim']} but the label embedding matrix has {embeddings.shape[1]} columns"
            )
        self.net = create_model(num_classes=space.num_classes, **model)
        self.criterion = LabelEmbeddingLoss(embeddings, **loss)
        # One metric object per stage (a ModuleDict cannot hold the key "train").
        self.train_metrics = MA52Metrics(space)
        self.val_metrics = MA52Metrics(space)
        self.test_metrics = MA52Metrics(space)
        self.init_task(optimizer, scheduler)

    @property
    def num_segments(self) -> int | None:
        """Frames per clip the network takes (it was built with ``model.num_segments``), None if unknown."""
        frames = getattr(self.net, "num_segments", None)
        return int(frames) if frames is not None else self.hparams["model"].get("num_segments")

    def _metrics(self, stage: str) -> MA52Metrics:
        return getattr(self, f"{stage}_metrics")

    def reset_metrics(self, stage: str) -> None:
        self._metrics(stage).reset()

    def compute_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        return self._metrics(stage).compute()

    def optimised_parameters(self):
        return self.net.parameters()

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        frames = self.num_segments
        if frames is not None and video.ndim == 5 and video.shape[1] != frames:
            raise ValueError(
                f"the batch's clips have {video.shape[1]} frames (data.num_segments) but the network was built for "
                f"{frames} (model.num_segments): data.num_segments must be the network's"
            )
        return self.net(video)

    # --- steps -----------------------------------------------------------------------
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

