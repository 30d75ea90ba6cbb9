"""The MA-52 benchmark metrics, computed exactly from accumulated counts.

State is a fine confusion matrix plus top-5 hits, summed across batches and
ranks. The body-part prediction is derived from the fine prediction, so the
coarse confusion matrix is the fine one with rows and columns summed by body
part. F1 follows sklearn: macro averages over the classes present in targets
or predictions; for single-label data micro-F1 equals top-1 accuracy.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from .labels import LabelSpace

METRIC_KEYS = (
    "F1_mean",
    "body_top1",
    "body_F1_micro",
    "body_F1_macro",
    "action_top1",
    "action_top5",
    "action_F1_micro",
    "action_F1_macro",
)


def f1_from_confusion(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(micro F1, macro F1) of a confusion matrix cm[target, pred]."""
    cm = cm.double()
    tp = cm.diagonal()
    support_true, support_pred = cm.sum(1), cm.sum(0)
    total = cm.sum()
    micro = tp.sum() / total if total > 0 else torch.zeros((), dtype=cm.dtype, device=cm.device)
    present = (support_true + support_pred) > 0
    denom = support_true + support_pred
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    macro = f1[present].mean() if present.any() else torch.zeros((), dtype=cm.dtype, device=cm.device)
    return micro, macro


def coarse_confusion(fine_cm: torch.Tensor, fine_to_coarse: torch.Tensor, num_coarse: int) -> torch.Tensor:
    """The coarse confusion matrix: rows and columns of ``fine_cm`` summed by coarse group."""
    onehot = torch.nn.functional.one_hot(fine_to_coarse, num_coarse).to(fine_cm.dtype)
    return onehot.T @ fine_cm @ onehot


class MA52Metrics(Metric):
    """Update with fine-class scores [N, K] and fine targets [N].

    The classes and the fine -> coarse mapping (MA-52: body parts) come from ``label_space``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, label_space: LabelSpace, top_k: int = 5, **kwargs):
        super().__init__(**kwargs)
        if label_space.multi_label:
            raise ValueError(f"MA52Metrics scores one class per clip; label space {label_space.name!r} is multi-label")
        self.num_classes = num_classes = label_space.num_classes
        self.num_coarse = label_space.num_coarse
        self.top_k = min(top_k, num_classes)
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("topk_hits", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.register_buffer("fine_to_coarse", label_space.fine_to_coarse_tensor(), persistent=False)

    def update(self, scores: torch.Tensor, target: torch.Tensor) -> None:
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(f"scores must be [N, {self.num_classes}], got {tuple(scores.shape)}")
        target = target.long()
        pred = scores.argmax(1)
        idx = target * self.num_classes + pred
        self.confmat += torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        topk = scores.topk(self.top_k, dim=1).indices
        self.topk_hits += (topk == target[:, None]).any(1).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        fine = self.confmat
        coarse = coarse_confusion(fine, self.fine_to_coarse, self.num_coarse)
        total = fine.sum().clamp(min=1)
        f_micro, f_macro = f1_from_confusion(fine)
        c_micro, c_macro = f1_from_confusion(coarse)
        out = {
            "F1_mean": (f_micro + f_macro + c_micro + c_macro) / 4,
            "body_top1": coarse.diagonal().sum() / total,
            "body_F1_micro": c_micro,
            "body_F1_macro": c_macro,
            "action_top1": fine.diagonal().sum() / total,
            "action_top5": self.topk_hits / total,
            "action_F1_micro": f_micro,
            "action_F1_macro": f_macro,
        }
        out = {k: v.float() for k, v in out.items()}
        out["num_clips"] = fine.sum().float()
        return out

    def confusion(self) -> dict[str, torch.Tensor]:
        """The fine and coarse confusion matrices (rows: true class) summed over ranks; a collective
        call under DDP (every rank calls it)."""
        with self.sync_context(should_sync=True, should_unsync=True):
            fine = self.confmat.detach().clone()
        return {"fine": fine, "coarse": coarse_confusion(fine, self.fine_to_coarse, self.num_coarse)}
