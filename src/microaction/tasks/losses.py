"""Classification plus label-embedding loss: L = CE + alpha * L_emb."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

EMBEDDING_DISTANCES = ("euclidean", "mse")


def embedding_distance(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``euclidean``: batch mean of ||pred - target||_2 (the paper's Eq. 2).
    ``mse``: mean over all elements of the squared difference (the released code)."""
    if kind == "euclidean":
        return (pred - target).norm(dim=1).mean()
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"loss.embedding_distance must be one of {EMBEDDING_DISTANCES}, got {kind!r}")


class LabelEmbeddingLoss(nn.Module):
    """L = CE + alpha * L_emb; with ``label_embeddings`` None (no matrix, alpha 0) cross-entropy alone."""

    def __init__(self, label_embeddings: torch.Tensor | None, alpha: float = 5.0, embedding_distance: str = "euclidean",
                 label_smoothing: float = 0.0):
        super().__init__()
        if embedding_distance not in EMBEDDING_DISTANCES:
            raise ValueError(f"loss.embedding_distance must be one of {EMBEDDING_DISTANCES}, got {embedding_distance!r}")
        if alpha < 0:
            raise ValueError(f"loss.alpha must be >= 0, got {alpha}")
        if label_embeddings is None and alpha != 0:
            raise ValueError(f"loss.alpha={alpha} needs a label-embedding matrix")
        self.register_buffer("label_embeddings", None if label_embeddings is None else label_embeddings.float())
        self.alpha = float(alpha)
        self.distance = embedding_distance
        self.label_smoothing = label_smoothing

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        cls = F.cross_entropy(outputs["logits"], target, label_smoothing=self.label_smoothing)
        if self.label_embeddings is None:
            return {"loss": cls, "loss_cls": cls}
        emb = embedding_distance(outputs["embedding"].float(), self.label_embeddings[target], self.distance)
        # Always part of the graph (x alpha, even 0) so every parameter gets a
        # gradient each step, which DDP requires.
        return {"loss": cls + self.alpha * emb, "loss_cls": cls, "loss_emb": emb}
