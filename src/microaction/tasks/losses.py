"""Classification plus label-embedding loss: L = CE + alpha * L_emb (+ body_weight * CE_body).

Beside the paper's loss, three switches that compose with any backbone:

- ``body_weight``: cross-entropy of the hierarchical head's body-part logits (``body_logits``, model.head=
  hierarchical) against the body part of the target, logged as ``loss_body``.
- ``reweight``: class weights of the fine cross-entropy from the training split's class counts
  (``class_weights``), held in the ``class_weights`` buffer so a checkpoint carries them.
- mixed batches (tasks/mixup.py): ``forward(..., mix=Mix(partner, lam))`` scores clip i against
  ``lam * y_i + (1 - lam) * y_partner(i)``. The cross-entropy terms are mixed as
  ``lam * CE(y_i) + (1 - lam) * CE(y_partner(i))``, which is cross-entropy against the mixed soft target
  (cross-entropy is linear in the target; label smoothing too) and keeps the class weights' normalisation
  of hard targets; the embedding term measures the distance to the mixed label vector
  ``lam * w_{y_i} + (1 - lam) * w_{y_partner(i)}``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

EMBEDDING_DISTANCES = ("euclidean", "mse")
REWEIGHTS = ("none", "inverse_freq", "body_inverse_freq")


class Mix(NamedTuple):
    """A mixed batch: clip i is ``lam * clip_i + (1 - lam) * clip_partner[i]``."""

    partner: torch.Tensor
    lam: float


def embedding_distance(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``euclidean``: batch mean of ||pred - target||_2 (the paper's Eq. 2).
    ``mse``: mean over all elements of the squared difference (the released code)."""
    if kind == "euclidean":
        return (pred - target).norm(dim=1).mean()
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"loss.embedding_distance must be one of {EMBEDDING_DISTANCES}, got {kind!r}")


def class_weights(labels: Iterable[int], num_classes: int, mode: str,
                  fine_to_coarse: Sequence[int] | None = None) -> torch.Tensor:
    """Per-class weights of the fine cross-entropy from training labels, normalised to mean 1 over the classes
    that occur; a class that never occurs gets 1 (it is never a training target).

    ``inverse_freq``: w_c proportional to 1 / n_c. ``body_inverse_freq``: w_c proportional to
    (n_g / k_g) / n_c, with n_g the clips of c's body part g and k_g the classes of g that occur: classes
    are balanced within their body part, while the body parts keep their frequencies. ``none``: all 1.
    """
    if mode not in REWEIGHTS:
        raise ValueError(f"loss.reweight must be one of {REWEIGHTS}, got {mode!r}")
    counts = Counter(int(y) for y in labels)
    bad = sorted(c for c in counts if not 0 <= c < num_classes)
    if bad:
        raise ValueError(f"loss.reweight: training labels {bad[:10]} are outside 0..{num_classes - 1}")
    weights = torch.ones(num_classes, dtype=torch.float64)
    if mode == "none" or not counts:
        return weights.float()
    present = sorted(counts)
    n = torch.tensor([counts[c] for c in present], dtype=torch.float64)
    if mode == "inverse_freq":
        raw = 1.0 / n
    else:
        if fine_to_coarse is None or len(fine_to_coarse) != num_classes:
            raise ValueError("loss.reweight=body_inverse_freq needs the label space's fine -> coarse mapping")
        group = [int(fine_to_coarse[c]) for c in present]
        clips, kinds = Counter(), Counter()
        for g, c in zip(group, present):
            clips[g] += counts[c]
            kinds[g] += 1
        raw = torch.tensor([clips[g] / kinds[g] for g in group], dtype=torch.float64) / n
    weights[present] = raw / raw.mean()
    return weights.float()


class LabelEmbeddingLoss(nn.Module):
    """L = CE + alpha * L_emb (+ body_weight * CE_body); with ``label_embeddings`` None (no matrix, alpha 0)
    cross-entropy alone. See the module docstring for ``body_weight``, ``reweight`` and mixed batches.

    ``fine_to_coarse`` (the label space's mapping) is needed for the body term and for
    ``reweight=body_inverse_freq``; ``num_classes`` sizes the class weights. The weights start at 1 and are
    set from the training labels by ``set_class_weights`` (the task does it when fitting starts).
    """

    def __init__(self, label_embeddings: torch.Tensor | None, alpha: float = 5.0, embedding_distance: str = "euclidean",
                 label_smoothing: float = 0.0, body_weight: float = 0.0, reweight: str = "none",
                 fine_to_coarse: Sequence[int] | None = None, num_classes: int | None = None):
        super().__init__()
        if embedding_distance not in EMBEDDING_DISTANCES:
            raise ValueError(f"loss.embedding_distance must be one of {EMBEDDING_DISTANCES}, got {embedding_distance!r}")
        if alpha < 0:
            raise ValueError(f"loss.alpha must be >= 0, got {alpha}")
        if label_embeddings is None and alpha != 0:
            raise ValueError(f"loss.alpha={alpha} needs a label-embedding matrix")
        if body_weight is None or body_weight < 0:
            raise ValueError(f"loss.body_weight must be >= 0, got {body_weight}")
        if reweight not in REWEIGHTS:
            raise ValueError(f"loss.reweight must be one of {REWEIGHTS}, got {reweight!r}")
        if reweight != "none" and num_classes is None:
            raise ValueError(f"loss.reweight={reweight} needs the number of classes")
        if (body_weight > 0 or reweight == "body_inverse_freq") and fine_to_coarse is None:
            raise ValueError("loss.body_weight / loss.reweight=body_inverse_freq need the fine -> coarse mapping")
        self.register_buffer("label_embeddings", None if label_embeddings is None else label_embeddings.float())
        self.alpha = float(alpha)
        self.distance = embedding_distance
        self.label_smoothing = label_smoothing
        self.body_weight = float(body_weight)
        self.reweight = reweight
        # saved with checkpoints only when reweighting (older checkpoints have no such key)
        self.register_buffer("class_weights", None if reweight == "none" else torch.ones(int(num_classes)))
        self.register_buffer("fine_to_coarse", None if fine_to_coarse is None
                             else torch.tensor([int(g) for g in fine_to_coarse], dtype=torch.long), persistent=False)

    def set_class_weights(self, labels: Iterable[int]) -> torch.Tensor:
        """Set the class weights from the training labels (``class_weights``); returns them."""
        if self.class_weights is None:
            raise ValueError("loss.reweight=none: no class weights to set")
        mapping = None if self.fine_to_coarse is None else self.fine_to_coarse.tolist()
        weights = class_weights(labels, self.class_weights.numel(), self.reweight, mapping)
        self.class_weights.copy_(weights.to(self.class_weights.device))
        return weights

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor,
                mix: Mix | None = None) -> dict[str, torch.Tensor]:
        def mixed(term):
            if mix is None:
                return term(target)
            return mix.lam * term(target) + (1.0 - mix.lam) * term(target[mix.partner])

        cls = mixed(lambda y: F.cross_entropy(outputs["logits"], y, weight=self.class_weights,
                                              label_smoothing=self.label_smoothing))
        out = {"loss_cls": cls}
        total = cls
        if "body_logits" in outputs:
            body = mixed(lambda y: F.cross_entropy(outputs["body_logits"].float(), self.fine_to_coarse[y]))
            # part of the graph even at weight 0, so the body head gets a gradient each step (DDP)
            total = total + self.body_weight * body
            out["loss_body"] = body
        elif self.body_weight > 0:
            raise ValueError(f"loss.body_weight={self.body_weight} needs model.head=hierarchical (no body_logits)")
        if self.label_embeddings is not None:
            vectors = self.label_embeddings[target]
            if mix is not None:
                vectors = mix.lam * vectors + (1.0 - mix.lam) * self.label_embeddings[target[mix.partner]]
            emb = embedding_distance(outputs["embedding"].float(), vectors, self.distance)
            # Always part of the graph (x alpha, even 0) so every parameter gets a
            # gradient each step, which DDP requires.
            total = total + self.alpha * emb
            out["loss_emb"] = emb
        return {"loss": total, **out}
