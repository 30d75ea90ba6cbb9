"""Emotion recognition from the face and the micro-actions (MA-52-Pro) as a LightningModule.

Two branches, each a registry network (MANet by default) giving one feature vector per frame:

- the face branch encodes the face clip: X_face [N, T, d] (its frame features projected to ``dim``);
- the action branch encodes the body clip, then a transformer encoder over time: X_act [N, T, d].

The action head A = FC(mean_t X_act) gives the multi-label micro-action logits (one per class of the
label space); the emotion head E = FC(mean_t [X_face; X_act]) the emotion logits. The loss is
L = BCE(A, actions) + beta * CE(E, emotion) (``loss.beta``). ``branches`` trains the full model
(``full``) or one branch alone: ``face`` (E from X_face; no action head, L = CE) or ``action`` (E from
X_act). ``loss.drop_body_parts`` leaves the micro-actions of those body parts (coarse classes, e.g.
``[lower limb, leg-hand]``) out of the action targets, the BCE and the mAP.

Either branch can start from a checkpoint of the single-label task (MA-52 MANet): its network's
``pretrained`` setting takes the file (``model.pretrained=...``, ``face_model.pretrained=...``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import SumMetric

from .. import reports
from ..labels import LabelSpace
from ..metrics_emotion import EMOTION_METRIC_KEYS, EmotionMetrics, MultiLabelAP
from ..models import create_model
from .base import ClipTask

log = logging.getLogger(__name__)

BRANCHES = ("full", "face", "action")
LOSS_KEYS = {"beta", "drop_body_parts"}


class FrameEncoder(nn.Module):
    """A registry network's per-frame features [N, T, C] projected to [N, T, dim]."""

    def __init__(self, model: dict, num_classes: int, dim: int):
        super().__init__()
        # the registry's head is built (so an MA-52 checkpoint's weights load as they are) but not used
        self.net = create_model(num_classes=num_classes, **{"embed_dim": None, **model})
        self.proj = nn.Linear(self.net.num_features, dim)

    @property
    def num_segments(self) -> int:
        return int(self.net.num_segments)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        self.net.check_clip(clip)
        feats = self.net.forward_features(clip)
        n = clip.shape[0]
        feats = feats.view(n, -1, feats.shape[-1])  # [N, T, C] (clip features: T = 1)
        return self.proj(feats)


class EmotionRecognition(ClipTask):
    """The face + micro-action emotion model (module docstring).

    ``model`` is the action branch's network and ``face_model`` the face branch's (None: the same
    settings, built separately); ``dim`` the width d of both branches' frame features; ``encoder_layers``
    and ``encoder_heads`` shape the action branch's transformer encoder. ``label_space`` must be
    multi-label with an ``emotion`` label set (MA-52-Pro's). Batches hold ``video`` and ``face`` [N, T, 3,
    H, W] and, labelled, ``emotion`` [N] and ``actions`` [N, C] (multi-hot).
    """

    metric_keys = (*EMOTION_METRIC_KEYS, "action_mAP", "actions_absent", "face_fallback_clips", "num_clips")
    best_key = "emotion_acc"
    metric_title = "MA-52-Pro metrics (%)"

    def __init__(
        self,
        model: dict,
        loss: dict | None = None,
        face_model: dict | None = None,
        branches: str = "full",
        dim: int = 512,
        encoder_layers: int = 2,
        encoder_heads: int = 8,
        encoder_dropout: float = 0.1,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        no_decay_norm_bias: bool = True,
        label_space: LabelSpace | dict | None = None,
    ):
        super().__init__()
        if label_space is None:
            raise ValueError("EmotionRecognition needs the data's label space (MA-52-Pro's: data=ma52pro)")
        space = LabelSpace.from_dict(label_space, "hyper_parameters.label_space")
        if not space.multi_label or "emotion" not in {s.name for s in space.extra}:
            raise ValueError(f"label space {space.name!r} has no emotions and multi-label actions: the emotion task "
                             "needs MA-52-Pro's (data=ma52pro or data=ma52pro_procedural)")
        if branches not in BRANCHES:
            raise ValueError(f"task.branches={branches!r}: expected one of {', '.join(BRANCHES)}")
        for key, net in (("model", model), ("task.face_model", face_model)):
            head = (net or {}).get("head", "linear")
            if head != "linear":
                # the branches are feature extractors: their own classifier heads are not used
                raise ValueError(f"{key}.head={head}: the emotion task takes the branches' features, not their heads; "
                                 "the hierarchical head is the MA-52 recognition task's (leave model.head=linear)")
        loss = dict(loss or {})
        unknown = sorted(set(loss) - LOSS_KEYS)
        if unknown:
            raise ValueError(f"loss.{unknown[0]}: not a setting of the emotion task's loss (its settings: "
                             f"{', '.join(sorted(LOSS_KEYS))}); the MA-52 loss group does not apply: use loss=emotion")
        beta = float(loss.get("beta", 0.03))
        if beta < 0:
            raise ValueError(f"loss.beta={beta}: expected a number >= 0")
        dropped = list(loss.get("drop_body_parts") or [])
        bad = [p for p in dropped if p not in space.coarse_classes]
        if bad:
            raise ValueError(f"loss.drop_body_parts: {bad} are not body parts of {space.name} "
                             f"(its body parts: {', '.join(space.coarse_classes)})")
        self.save_hyperparameters({
            "model": model, "face_model": face_model, "loss": {"beta": beta, "drop_body_parts": dropped},
            "branches": branches, "dim": dim, "encoder_layers": encoder_layers, "encoder_heads": encoder_heads,
            "encoder_dropout": encoder_dropout, "no_decay_norm_bias": no_decay_norm_bias,
            "label_space": space.to_dict(),
        })
        self.label_space = space
        self.emotions = space.label_set("emotion").classes
        self.beta = beta
        keep = [c for c in range(space.num_classes) if space.coarse_classes[space.fine_to_coarse[c]] not in dropped]
        self.register_buffer("kept_actions", torch.tensor(keep, dtype=torch.long), persistent=False)
        self.uses_face = branches in ("full", "face")
        self.uses_action = branches in ("full", "action")
        self.face = FrameEncoder(dict(face_model or model), space.num_classes, dim) if self.uses_face else None
        if self.uses_action:
            self.action = FrameEncoder(dict(model), space.num_classes, dim)
            layer = nn.TransformerEncoderLayer(dim, encoder_heads, dim_feedforward=2 * dim, dropout=encoder_dropout,
                                               batch_first=True, norm_first=True)
            self.temporal = nn.TransformerEncoder(layer, encoder_layers, enable_nested_tensor=False)
            self.position = nn.Parameter(torch.zeros(1, self.action.num_segments, dim))
            nn.init.trunc_normal_(self.position, std=0.02)
            self.action_head = nn.Linear(dim, len(keep))
        else:
            self.action = None
        self.emotion_head = nn.Linear(dim * (self.uses_face + self.uses_action), len(self.emotions))
        self.emotion_metrics = {s: EmotionMetrics(len(self.emotions)) for s in ("train", "val", "test")}
        self.action_metrics = {s: MultiLabelAP(len(keep)) for s in ("train", "val", "test")}
        # registered as submodules (moved with the module to its device); a ModuleDict cannot hold "train"
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_emotion_metrics", self.emotion_metrics[stage])
            setattr(self, f"{stage}_action_metrics", self.action_metrics[stage])
        # clips whose face clip is the whole frame (no face in their track), summed over ranks
        self.face_fallbacks = {s: SumMetric() for s in ("train", "val", "test")}
        for stage, metric in self.face_fallbacks.items():
            setattr(self, f"{stage}_face_fallbacks", metric)
        self.init_task(optimizer, scheduler)

    @property
    def num_segments(self) -> int:
        return (self.action or self.face).num_segments

    def networks(self) -> list[nn.Module]:
        """The branches' registry networks (what ``accel.channels_last`` and ``accel.compile`` apply to)."""
        return [enc.net for enc in (self.face, self.action) if enc is not None]

    @property
    def initialised_from(self) -> str:
        """What the branches' weights start from (the pipeline records it as the run's ``init``)."""
        inits = {name: enc.net.initialised_from for name, enc in (("face", self.face), ("action", self.action)) if enc}
        values = set(inits.values())
        return values.pop() if len(values) == 1 else ", ".join(f"{k}: {v}" for k, v in inits.items())

    def forward(self, video: torch.Tensor, face: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"emotion": [N, E] logits, "actions": [N, kept classes] logits (not with branches=face)}``."""
        pooled, out = [], {}
        if self.face is not None:
            pooled.append(self.face(face).mean(1))
        if self.action is not None:
            x = self.action(video)
            x = self.temporal(x + self.position[:, : x.shape[1]])
            pooled.append(x.mean(1))
            out["actions"] = self.action_head(pooled[-1])
        out["emotion"] = self.emotion_head(torch.cat(pooled, 1))
        return out

    def losses(self, out: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        emo = F.cross_entropy(out["emotion"].float(), batch["emotion"])
        if "actions" not in out:
            return {"loss": emo, "loss_emotion": emo}
        act = F.binary_cross_entropy_with_logits(out["actions"].float(), batch["actions"][:, self.kept_actions].float())
        return {"loss": act + self.beta * emo, "loss_actions": act, "loss_emotion": emo}

    # --- metrics ---------------------------------------------------------------------
    def reset_metrics(self, stage: str) -> None:
        self.emotion_metrics[stage].reset()
        self.action_metrics[stage].reset()
        self.face_fallbacks[stage].reset()

    def compute_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        values = dict(self.emotion_metrics[stage].compute())
        values["num_clips"] = values.pop("emotion_num_clips")
        if self.action is not None:
            values.update(self.action_metrics[stage].compute())
        values["face_fallback_clips"] = self.face_fallbacks[stage].compute() if self.uses_face else torch.zeros(())
        return {k: v.float() if isinstance(v, torch.Tensor) else torch.tensor(float(v)) for k, v in values.items()}

    def _update(self, stage: str, out: dict, batch: dict) -> None:
        self.emotion_metrics[stage].update(out["emotion"].detach().float(), batch["emotion"])
        if "actions" in out:
            self.action_metrics[stage].update(out["actions"].detach().float(),
                                              batch["actions"][:, self.kept_actions].long())
        found = batch.get("face_found")
        if found is not None and self.uses_face:
            self.face_fallbacks[stage].update((~found.bool()).sum().float())

    # --- steps -----------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int):
        self._count_skipped("train", batch)
        if "video" not in batch:
            return None
        out = self(batch["video"], batch["face"])
        losses = self.losses(out, batch)
        n = batch["emotion"].shape[0]
        for k, v in losses.items():
            self.log(f"train/{k}", v, on_step=k == "loss", on_epoch=True, prog_bar=k == "loss", batch_size=n)
        self._update("train", out, batch)
        return losses["loss"]

    def _eval_step(self, stage: str, batch: dict) -> None:
        self._count_skipped(stage, batch)
        if "video" not in batch or "emotion" not in batch:
            return
        out = self(batch["video"], batch["face"])
        losses = self.losses(out, batch)
        self.log(f"{stage}/loss", losses["loss"], on_epoch=True, batch_size=batch["emotion"].shape[0], sync_dist=True)
        self._update(stage, out, batch)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        """One row per video: ``{"name", "emotion" (true id or None), "emotion_prob" [E], "actions" (true ids
        or None), "action_prob" [C] (sigmoid; dropped classes 0; None with branches=face), "status", "detail"}``;
        a video skipped as undecodable is ``{"name", "status": "skipped", "detail"}``."""
        self._count_skipped("predict", batch)
        notes = batch.get("decode_notes") or {}
        rows = [{"name": n, "status": "skipped", "detail": notes.get(n, "")} for n in batch.get("skipped", ())]
        if "video" not in batch:
            return rows
        out = self(batch["video"], batch["face"])
        emotion = out["emotion"].float().softmax(1)
        actions = None
        if "actions" in out:
            actions = torch.zeros(emotion.shape[0], self.label_space.num_classes, device=emotion.device)
            actions[:, self.kept_actions] = out["actions"].float().sigmoid()
        partial = set(batch.get("partial", ()))
        for i, name in enumerate(batch["name"]):
            truth = batch.get("actions")
            rows.append({
                "name": name,
                "emotion": int(batch["emotion"][i]) if "emotion" in batch else None,
                "emotion_prob": emotion[i].tolist(),
                "actions": truth[i].nonzero().flatten().tolist() if truth is not None else None,
                "action_prob": actions[i].tolist() if actions is not None else None,
                "status": "partial" if name in partial else "",
                "detail": notes.get(name, "") if name in partial else "",
            })
        return rows

    # --- files -----------------------------------------------------------------------
    def write_predictions(self, path: Path, rows: Sequence[dict]) -> Path:
        """predictions_<split>.csv: per video the true and predicted emotion with probabilities, and the true
        micro-actions beside the predicted ones."""
        return reports.write_emotion_predictions_csv(path, rows, self.emotions, self.label_space.classes)

    def evaluation_reports(self, stage: str, out_dir: Path, write: bool) -> dict[str, str]:
        """After validate/test: the emotion confusion matrix (PNG) and the per-class AP (CSV) of ``stage``.
        Every rank calls it (the figures are gathered); ``write``: this rank writes the files."""
        if stage not in self.emotion_metrics:
            return {}
        cm = self.emotion_metrics[stage].confusion()
        ap = self.action_metrics[stage].per_class_ap() if self.action is not None else None
        positives = self.action_metrics[stage].positives() if self.action is not None else None
        if not write or int(cm.sum()) == 0:
            return {}
        files = {"confusion_emotion": str(reports.plot_confusion(
            cm.cpu().numpy(), list(self.emotions), out_dir / f"confusion_emotion_{stage}.png",
            f"{stage}: emotions (row-normalised)"))}
        if ap is not None:
            names = [self.label_space.classes[c] for c in self.kept_actions.tolist()]
            files["per_class_ap"] = str(reports.write_per_class_ap_csv(
                out_dir / f"per_class_ap_{stage}.csv", ap.tolist(), names, positives.tolist()))
        return files
