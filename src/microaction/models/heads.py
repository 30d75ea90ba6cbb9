"""The heads ``create_model`` attaches to a backbone: ``model.head=linear`` (``base.ClipHead``) or
``model.head=hierarchical`` (``HierarchicalHead``).

The hierarchical head adds a body-part (coarse) classifier beside the fine one and conditions the fine
prediction on it. With fine logits ``z`` [N, K], body logits ``b`` [N, G] and ``g(c)`` the body part of
fine class ``c`` (the label space's ``fine_to_coarse``):

    P_flat(c) = softmax(z)_c
    P_hier(c) = softmax(b)_{g(c)} * exp(z_c) / sum_{c' : g(c') = g(c)} exp(z_c')
    P(c)      = (1 - w) * P_flat(c) + w * P_hier(c)          w = model.head_fusion in [0, 1]

``P_hier`` factorises the fine prediction as P(body part) * P(class | body part), the within-part
distribution coming from the fine classifier. Both terms sum to 1 over the classes, so ``P`` is a
distribution, and the head returns ``logits = log P``: softmax, argmax and top-k of ``logits`` are those
of ``P``, so metrics, predictions and cross-entropy use the fused prediction unchanged. ``body_logits`` (``b``)
is returned too, for the loss's body-part term (``loss.body_weight``). w = 0 is the plain fine
classifier (plus a body classifier trained only by its own loss); w = 1 the fully hierarchical one.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .base import ClipHead

HEADS = ("linear", "hierarchical")


class HierarchicalHead(ClipHead):
    """``ClipHead`` plus a body-part classifier ``body_fc``; fine logits fused as in the module docstring.

    Per-frame features are averaged over T first (fine and body logits alike), then fused. Its
    ``fc`` and ``embed`` keep ``ClipHead``'s names, so a linear head's weights load into it (``body_fc``
    then starts at its initialisation).
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float, embed_dim: int | None, embed_hidden: int,
                 fine_to_coarse: Sequence[int], fusion: float):
        super().__init__(in_features, num_classes, dropout, embed_dim, embed_hidden)
        check_head("hierarchical", num_classes, fusion, fine_to_coarse)
        mapping = [int(g) for g in fine_to_coarse]
        num_groups = max(mapping) + 1
        self.fusion = float(fusion)
        self.body_fc = nn.Linear(in_features, num_groups)
        groups = torch.tensor(mapping, dtype=torch.long)
        # plain data of the label space, rebuilt from the hyperparameters: not part of the state dict
        self.register_buffer("fine_to_coarse", groups, persistent=False)
        self.register_buffer("group_mask", torch.arange(num_groups)[:, None] == groups[None, :], persistent=False)

    def fuse(self, fine: torch.Tensor, body: torch.Tensor) -> torch.Tensor:
        """log P of the module docstring from fine logits [N, K] and body logits [N, G]."""
        fine, body = fine.float(), body.float()
        flat = fine.log_softmax(1)
        if self.fusion == 0.0:
            return flat
        # log-sum-exp of the fine logits within each body part: [N, G]
        masked = fine[:, None, :].masked_fill(~self.group_mask.to(fine.device), float("-inf"))
        within = fine - masked.logsumexp(2)[:, self.fine_to_coarse]
        hier = body.log_softmax(1)[:, self.fine_to_coarse] + within
        if self.fusion == 1.0:
            return hier
        w = torch.tensor(self.fusion, device=fine.device)
        return torch.logaddexp(flat + torch.log1p(-w), hier + torch.log(w))

    def forward(self, feats: torch.Tensor, num_segments: int = 1) -> dict[str, torch.Tensor]:
        feats = self.dropout(feats)
        n = feats.shape[0] // num_segments
        fine = self.fc(feats).view(n, num_segments, -1).mean(1)
        body = self.body_fc(feats).view(n, num_segments, -1).mean(1)
        out = {"logits": self.fuse(fine, body), "body_logits": body}
        if self.embed is not None:
            out["embedding"] = self.embed(feats).view(n, num_segments, -1).mean(1)
        return out


def check_head(kind: str, num_classes: int, fusion: float, fine_to_coarse: Sequence[int] | None) -> None:
    """Refuse, naming the setting, a head ``build_head`` cannot build (called before the backbone is built)."""
    if kind not in HEADS:
        raise ValueError(f"model.head must be one of {HEADS}, got {kind!r}")
    if kind == "linear":
        return
    if fine_to_coarse is None:
        raise ValueError("model.head=hierarchical needs the fine -> coarse mapping (fine_to_coarse), which the "
                         "recognition task passes from its label space; create_model(..., fine_to_coarse=[...])")
    mapping = list(fine_to_coarse)
    if len(mapping) != num_classes:
        raise ValueError(f"model.head=hierarchical: fine_to_coarse has {len(mapping)} entries for {num_classes} "
                         "classes (it comes from the task's label space)")
    if not all(isinstance(g, int) and g >= 0 for g in mapping):
        raise ValueError(f"model.head=hierarchical: fine_to_coarse must be group ids >= 0, got {mapping}")
    if isinstance(fusion, bool) or not isinstance(fusion, (int, float)) or not 0.0 <= float(fusion) <= 1.0:
        raise ValueError(f"model.head_fusion must be a number in [0, 1], got {fusion!r}")


def build_head(kind: str, in_features: int, num_classes: int, dropout: float, embed_dim: int | None,
               embed_hidden: int, fusion: float = 0.5, fine_to_coarse: Sequence[int] | None = None) -> ClipHead:
    """The head ``model.head`` names; ``fine_to_coarse`` (the label space's) is needed by ``hierarchical``."""
    check_head(kind, num_classes, fusion, fine_to_coarse)
    if kind == "linear":
        return ClipHead(in_features, num_classes, dropout, embed_dim, embed_hidden)
    return HierarchicalHead(in_features, num_classes, dropout, embed_dim, embed_hidden, fine_to_coarse, fusion)
