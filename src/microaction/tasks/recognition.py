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
from .mixup import MixupSettings, mix_batch
from .views import forward_views, view_average_of

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

    The recipe switches (docs/recipes.md): ``model.head=hierarchical`` gets the label space's fine -> coarse
    mapping from here, and ``loss.body_weight`` (null: 1 with that head, else 0) weighs its body-part term;
    ``loss.reweight`` sets the class weights from the datamodule's training labels when fitting starts
    (``on_fit_start``); ``loss.mixup`` mixes training batches (tasks/mixup.py); ``layer_decay`` scales the
    learning rate of a backbone's block l of L by ``layer_decay ** (L + 1 - l)`` and ``backbone_lr_scale``
    that of everything outside the head.

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
        layer_decay: float | None = None,
        backbone_lr_scale: float = 1.0,
    ):
        super().__init__()
        space = label_space_of(label_space, num_classes)
        if space.multi_label:
            raise ValueError(f"label space {space.name!r} is multi-label: MicroActionRecognition predicts one class "
                             "per clip; a multi-label task is needed")
        if layer_decay is not None and not 0 < float(layer_decay) <= 1:
            raise ValueError(f"task.layer_decay must be in (0, 1] or null, got {layer_decay}")
        if not float(backbone_lr_scale) > 0:
            raise ValueError(f"task.backbone_lr_scale must be > 0, got {backbone_lr_scale}")
        self.save_hyperparameters({"model": model, "loss": loss, "no_decay_norm_bias": no_decay_norm_bias,
                                   "label_space": space.to_dict(), "layer_decay": layer_decay,
                                   "backbone_lr_scale": backbone_lr_scale})
        self.label_space = space
        loss = dict(loss or {})
        path = loss.pop("embeddings", None)
        self.mixup = MixupSettings.from_config(loss.pop("mixup", None))
        model = dict(model)
        if "fine_to_coarse" in model:
            raise ValueError("model.fine_to_coarse: not a setting to give; the task takes it from its label space")
        hierarchical = model.get("head", "linear") == "hierarchical"
        if hierarchical:
            model["fine_to_coarse"] = list(space.fine_to_coarse)
        body_weight = loss.pop("body_weight", None)
        if body_weight is None:
            body_weight = 1.0 if hierarchical else 0.0
        elif body_weight > 0 and not hierarchical:
            raise ValueError(f"loss.body_weight={body_weight} weighs the body-part head's loss: it needs "
                             "model.head=hierarchical (or loss.body_weight=0)")
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
        self.criterion = LabelEmbeddingLoss(embeddings, **loss, body_weight=body_weight,
                                            fine_to_coarse=space.fine_to_coarse, num_classes=space.num_classes)
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

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """The shared groups (decay / no decay), or with ``layer_decay`` / ``backbone_lr_scale`` one group per
        learning rate and decay, each with its own ``lr`` (the optimizer's lr times the parameter's scale)."""
        decay = self.hparams.get("layer_decay")
        scale = float(self.hparams.get("backbone_lr_scale") or 1.0)
        if decay is None and scale == 1.0:
            return super().parameter_groups(weight_decay)
        base_lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        if base_lr is None:
            raise ValueError("task.layer_decay / task.backbone_lr_scale scale optimizer.lr, which is not set")
        depth = getattr(self.net, "num_layer_groups", None)
        if decay is not None and depth is None:
            raise ValueError(f"task.layer_decay={decay}: model={self.hparams['model'].get('name')} has no order of "
                             "layers to decay over (a backbone defines num_layer_groups and layer_group; VideoMAE does)")
        groups: dict[tuple[float, bool], list] = {}
        for name, p in self.net.named_parameters():
            if not p.requires_grad:
                continue
            in_head = name.startswith("head.")
            lr_scale = 1.0 if in_head else scale
            if decay is not None:
                level = depth + 1 if in_head else self.net.layer_group(name)
                lr_scale *= float(decay) ** (depth + 1 - level)
            no_decay = bool(self.hparams.no_decay_norm_bias) and p.ndim <= 1
            groups.setdefault((lr_scale, no_decay), []).append(p)
        return [{"params": params, "weight_decay": 0.0 if no_decay else weight_decay, "lr": base_lr * lr_scale}
                for (lr_scale, no_decay), params in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1]))]

    def on_fit_start(self) -> None:
        """``loss.reweight``: class weights from the training labels of the attached datamodule."""
        if self.criterion.reweight == "none":
            return
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or not hasattr(dm, "train_labels"):
            raise ValueError(f"loss.reweight={self.criterion.reweight} counts the training labels of the datamodule "
                             "(its train_labels()); this run has none")
        if (getattr(dm, "hparams", None) or {}).get("sampler") == "class_balanced":
            log.warning("loss.reweight=%s with data.sampler=class_balanced corrects the class frequencies twice",
                        self.criterion.reweight)
        labels = dm.train_labels()
        weights = self.criterion.set_class_weights(labels)
        present = sorted(set(int(y) for y in labels))
        absent = [c for c in range(self.label_space.num_classes) if c not in set(present)]
        log.info("loss.reweight=%s: class weights from %d training clips, %.3g to %.3g%s", self.criterion.reweight,
                 len(labels), float(weights[present].min()), float(weights[present].max()),
                 f"; classes without training clips (weight 1): {absent}" if absent else "")

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
        video, mix = mix_batch(batch["video"], batch["label"], self.mixup, self.label_space.fine_to_coarse)
        out = self(video)
        losses = self.criterion(out, batch["label"], mix)
        n = batch["label"].shape[0]
        for k, v in losses.items():
            self.log(f"train/{k}", v, on_step=k == "loss", on_epoch=True, prog_bar=k == "loss", batch_size=n)
        # with mixup: each clip's scores against its own label
        self.train_metrics.update(out["logits"].detach(), batch["label"])
        return losses["loss"]

    def _eval_step(self, stage: str, batch: dict) -> None:
        """Loss and metrics of a labelled batch; a batch without labels (hidden test labels) is only counted."""
        self._count_skipped(stage, batch)
        if "video" not in batch or "label" not in batch:
            return
        out = forward_views(self, batch["video"], view_average_of(self))  # several views: averaged (tasks/views.py)
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
        "topk", "topk_prob" (the 5 most probable fine classes, softmax), "logits" (every class's score, for
        ensembles), "status", "detail"}``; status is "" or "partial" (decoded in part, ``detail`` says how
        far). A clip skipped as undecodable is ``{"name", "status": "skipped", "detail": reason}``."""
        self._count_skipped("predict", batch)
        notes = batch.get("decode_notes") or {}
        rows = [{"name": n, "status": "skipped", "detail": notes.get(n, "")} for n in batch.get("skipped", ())]
        if "video" not in batch:
            return rows
        scores = forward_views(self, batch["video"], view_average_of(self))["logits"].float()
        top = scores.softmax(1).topk(min(5, scores.shape[1]), dim=1)
        labels = batch.get("label")
        partial = set(batch.get("partial", ()))
        for i, name in enumerate(batch["name"]):
            rows.append({
                "name": name,
                "label": None if labels is None else int(labels[i]),
                "topk": top.indices[i].tolist(),
                "topk_prob": top.values[i].tolist(),
                "logits": scores[i].tolist(),
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

