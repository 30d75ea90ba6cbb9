"""The MA-52-Pro metrics: emotion classification and multi-label micro-action mAP.

``EmotionMetrics`` keeps an emotion confusion matrix summed across batches and ranks; every emotion
figure is a function of it, so a split scored in chunks or on several processes gives the same numbers
as one pass. ``MultiLabelAP`` needs every score (average precision depends on the ranking of all clips),
so it keeps the scores and targets themselves and concatenates them across ranks. Neither corrects for
clips a sampler repeats: evaluation loaders hand each clip to exactly one rank
(``microaction.data.samplers.UnpaddedDistributedSampler``), so summing and concatenating count each
clip once.

All figures are fractions in [0, 1], as in ``microaction.metrics``.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from .metrics import f1_from_confusion

EMOTION_METRIC_KEYS = ("emotion_acc", "emotion_acc_avg", "emotion_f1_weighted", "emotion_uf1", "emotion_uar")
ACTION_AP_KEYS = ("action_mAP", "actions_absent")


def emotion_figures(cm: torch.Tensor) -> dict[str, torch.Tensor]:
    """The emotion figures (float64 scalars) of a confusion matrix ``cm[target, pred]``; see ``EmotionMetrics``."""
    cm = cm.double()
    zero = torch.zeros((), dtype=cm.dtype, device=cm.device)
    tp = cm.diagonal()
    support_true, support_pred = cm.sum(1), cm.sum(0)
    total = cm.sum()
    in_targets = support_true > 0
    in_either = in_targets | (support_pred > 0)
    recall = tp / support_true.clamp(min=1)  # 0 where the class has no target, as sklearn's zero_division=0
    denom = support_true + support_pred
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    _, uf1 = f1_from_confusion(cm)
    return {
        "emotion_acc": tp.sum() / total if total > 0 else zero,
        "emotion_acc_avg": recall[in_targets].mean() if in_targets.any() else zero,
        "emotion_f1_weighted": (f1 * support_true).sum() / total if total > 0 else zero,
        "emotion_uf1": uf1,
        "emotion_uar": recall[in_either].mean() if in_either.any() else zero,
    }


class EmotionMetrics(Metric):
    """Single-label emotion figures; update with scores [N, E] (any monotone form: logits or
    probabilities, the prediction is the argmax) and emotion ids [N].

    ``compute()`` returns, as float32 scalars (fractions), with sklearn's semantics where the
    labels considered are those present in the targets or the predictions (``labels=None``):

    - ``emotion_acc``: accuracy (``accuracy_score``); Table VI's "Acc".
    - ``emotion_acc_avg``: the mean of the per-emotion accuracies, an emotion's accuracy being the
      fraction of its clips predicted as it (its recall), over the emotions present in the targets
      (``balanced_accuracy_score``).
    - ``emotion_f1_weighted``: F1 per emotion weighted by its number of target clips
      (``f1_score(average="weighted")``); Table VI's "F1weight".
    - ``emotion_uf1``: unweighted mean of the per-emotion F1 over the emotions in the targets or the
      predictions (``f1_score(average="macro")``); Table VI's "UF1".
    - ``emotion_uar``: unweighted mean of the per-emotion recall over the emotions in the targets or
      the predictions, an emotion predicted but absent from the targets counting as recall 0
      (``recall_score(average="macro")``, zero_division=0); Table VI's "UAR".
    - ``emotion_num_clips``: the clips scored.

    ``emotion_acc_avg`` and ``emotion_uar`` differ only when some emotion is predicted but never the
    target; on a split where every emotion occurs (the MA-52-Pro test set) they are the same number.
    The paper's Table VII lists per-emotion accuracies (``per_class_accuracy``) and an "Acc Avg"
    column; its "Acc Avg" entries equal Table VI's overall Acc (62.38 for the full model) rather
    than the mean of the five per-emotion accuracies beside them (41.76 for the full model, 41.05
    for the model without lower-limb labels, whose listed UAR is 41.05). So the paper's "Acc Avg"
    is ``emotion_acc``, and the mean of its per-emotion accuracies is ``emotion_acc_avg`` (the UAR).

    With no clip scored every figure is 0 and ``emotion_num_clips`` is 0.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"EmotionMetrics needs at least 2 emotions, got num_classes={num_classes}")
        self.num_classes = num_classes
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, target: torch.Tensor) -> None:
        e = self.num_classes
        if scores.ndim != 2 or scores.shape[1] != e:
            raise ValueError(f"emotion scores must be [N, {e}], got {tuple(scores.shape)}")
        if target.ndim != 1 or target.shape[0] != scores.shape[0]:
            raise ValueError(f"emotion targets must be [N] with N={scores.shape[0]} (one id per score row), "
                             f"got {tuple(target.shape)}")
        if target.is_floating_point():
            raise ValueError(f"emotion targets must be integer ids, got dtype {target.dtype}")
        if target.numel() == 0:
            return
        target = target.long()
        if target.min() < 0 or target.max() >= e:
            raise ValueError(f"emotion targets must be ids in [0, {e}), got values in "
                             f"[{target.min().item()}, {target.max().item()}]")
        if not torch.isfinite(scores).all():
            raise ValueError("emotion scores contain NaN or infinite values")
        idx = target * e + scores.argmax(1)
        self.confmat += torch.bincount(idx, minlength=e * e).view(e, e)

    def compute(self) -> dict[str, torch.Tensor]:
        out = {k: v.float() for k, v in emotion_figures(self.confmat).items()}
        out["emotion_num_clips"] = self.confmat.sum().float()
        return out

    def confusion(self) -> torch.Tensor:
        """The confusion matrix [E, E] (rows: true emotion, columns: predicted) summed over ranks; a
        collective call under DDP (every rank calls it)."""
        with self.sync_context(should_sync=True, should_unsync=True):
            return self.confmat.detach().clone()

    def per_class_accuracy(self) -> torch.Tensor:
        """Per emotion, the fraction of its clips predicted as it (float64 [E]; Table VII's "Acc Joy" ...),
        NaN for an emotion with no clip; a collective call under DDP."""
        cm = self.confusion().double()
        support = cm.sum(1)
        return torch.where(support > 0, cm.diagonal() / support.clamp(min=1), torch.full_like(support, float("nan")))


def average_precision(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Average precision per class of scores [N, C] against 0/1 targets [N, C], float64 [C].

    As sklearn's ``average_precision_score``: AP = sum over thresholds of (R_k - R_{k-1}) * P_k, the
    thresholds being the distinct scores (clips with equal scores enter the ranking together, so
    the order of tied clips does not matter), with no interpolation. NaN for a class without a
    positive target (sklearn reports 0 there, with a warning).
    """
    n, c = scores.shape
    if n == 0:
        return torch.full((c,), float("nan"), dtype=torch.float64, device=scores.device)
    scores, order = torch.sort(scores.double(), dim=0, descending=True, stable=True)
    hits = torch.gather(target.double(), 0, order)
    tps = hits.cumsum(0)
    rank = torch.arange(1, n + 1, dtype=torch.float64, device=scores.device)[:, None]
    # the last position of each run of equal scores is where that threshold's counts are read
    is_end = torch.ones_like(hits, dtype=torch.bool)
    is_end[:-1] = scores[:-1] != scores[1:]
    end_pos = torch.where(is_end, torch.arange(n, device=scores.device)[:, None], n)
    end_pos = end_pos.flip(0).cummin(0).values.flip(0)  # for every position, the end of its run
    precision_at_end = torch.gather(tps / rank, 0, end_pos)
    positives = tps[-1]
    ap = (hits * precision_at_end).sum(0) / positives.clamp(min=1)
    return torch.where(positives > 0, ap, torch.full_like(ap, float("nan")))


class MultiLabelAP(Metric):
    """mAP of multi-label micro-actions; update with scores [N, C] (logits or probabilities: AP
    depends only on the ranking) and 0/1 targets [N, C].

    ``compute()`` returns ``action_mAP``, the mean of the per-class AP (``average_precision``) over
    the classes with at least one positive target among the clips scored, and ``actions_absent``, the
    number of classes left out of that mean because no clip has them (both float32 scalars). sklearn's
    ``average_precision_score(average="macro")`` would count those classes as AP 0 instead. With no
    class present, ``action_mAP`` is 0 and ``actions_absent`` is C.

    The scores are kept in the metric's dtype (float32 unless changed with ``set_dtype``); ties are
    those of the kept values. State is every clip's scores and targets, concatenated across ranks.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"MultiLabelAP needs at least 1 class, got num_classes={num_classes}")
        self.num_classes = num_classes
        # Flat 1-D chunks: a rank that scored no clip syncs an empty 1-D tensor of the metric's
        # dtype (what torchmetrics substitutes for an empty list), which must match the others.
        self.add_state("scores", [], dist_reduce_fx="cat")
        self.add_state("targets", [], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, target: torch.Tensor) -> None:
        c = self.num_classes
        if scores.ndim != 2 or scores.shape[1] != c:
            raise ValueError(f"action scores must be [N, {c}], got {tuple(scores.shape)}")
        if target.shape != scores.shape:
            raise ValueError(f"action targets must be 0/1 of the scores' shape {tuple(scores.shape)}, "
                             f"got {tuple(target.shape)}")
        if scores.shape[0] == 0:
            return
        if not torch.isfinite(scores).all():
            raise ValueError("action scores contain NaN or infinite values")
        if ((target != 0) & (target != 1)).any():
            raise ValueError("action targets must be 0 or 1 (a multi-hot vector per clip)")
        self.scores.append(scores.detach().to(self.dtype).reshape(-1))
        self.targets.append(target.detach().to(self.dtype).reshape(-1))

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.scores, list) and not self.scores:
            empty = torch.zeros(0, self.num_classes, dtype=self.dtype, device=self.device)
            return empty, empty
        return (dim_zero_cat(self.scores).view(-1, self.num_classes),
                dim_zero_cat(self.targets).view(-1, self.num_classes))

    def compute(self) -> dict[str, torch.Tensor]:
        ap = average_precision(*self._gathered())
        present = ~ap.isnan()
        m = ap[present].mean() if present.any() else torch.zeros((), dtype=ap.dtype, device=ap.device)
        return {"action_mAP": m.float(), "actions_absent": (~present).sum().float()}

    def per_class_ap(self) -> torch.Tensor:
        """AP per class (float64 [C]), NaN for a class without a positive target; a collective call
        under DDP (every rank calls it)."""
        with self.sync_context(should_sync=True, should_unsync=True):
            return average_precision(*self._gathered())

    def positives(self) -> torch.Tensor:
        """The number of clips carrying each class (int64 [C]), summed over ranks; a collective call."""
        with self.sync_context(should_sync=True, should_unsync=True):
            return self._gathered()[1].sum(0).long()
