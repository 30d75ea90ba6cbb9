"""The base class of every registered model and the head they all share.

A model is its backbone class (a subclass of ``ClipClassifier``) with a ``ClipHead`` in
``model.head``. The backbone defines its layers and ``forward_features``; ``create_model``
(registry.py) builds it, attaches the head and loads its pretrained weights.

``forward_features`` returns either per-frame features ``[N*T, C]`` (2D networks: TSN, TSM,
TIN, MANet; ``frame_features = True``) or clip features ``[N, C]`` (3D networks and video
transformers). ``ClipHead`` turns either into class scores plus the optional label-embedding
output, averaging per-frame outputs over T, so the loss (``loss.alpha``) and the metrics see the
same thing whatever the backbone.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ClipHead(nn.Module):
    """Features -> classifier and embedding branches; per-frame outputs averaged over T."""

    def __init__(self, in_features: int, num_classes: int, dropout: float, embed_dim: int | None, embed_hidden: int):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)
        self.embed = (
            nn.Sequential(nn.Linear(in_features, embed_hidden), nn.Tanh(), nn.Linear(embed_hidden, embed_dim))
            if embed_dim
            else None
        )

    def forward(self, feats: torch.Tensor, num_segments: int = 1) -> dict[str, torch.Tensor]:
        """``num_segments=T`` for per-frame features ``[N*T, C]``, 1 for clip features ``[N, C]``."""
        feats = self.dropout(feats)
        n = feats.shape[0] // num_segments
        out = {"logits": self.fc(feats).view(n, num_segments, -1).mean(1)}
        if self.embed is not None:
            out["embedding"] = self.embed(feats).view(n, num_segments, -1).mean(1)
        return out


class ClipClassifier(nn.Module):
    """Input ``[N, T, 3, H, W]`` -> ``{"logits": [N, K], "embedding": [N, D]}``.

    A backbone subclass sets ``num_segments`` (T, the frame count it was built for) and
    ``num_features`` (the width of its features) and implements ``forward_features(x)`` on
    ``[N, T, 3, H, W]``. ``create_model`` adds ``head`` and ``initialised_from``.

    How its pretrained weights are found and fitted (used by ``create_model``):
    ``weights_name`` names the weights in logs and errors; ``library_weights()`` gives
    ``(label, torchvision weight-enum member)`` or None; ``adapt_weights(state)`` maps a file's
    state dict onto this module's key names; keys containing one of ``weights_allow_missing``
    may stay at their initialisation; ``weights_strict`` also refuses keys the model lacks;
    ``named_weights(source, local_files_only)`` reads weights that ``model.pretrained`` names by
    something other than a file (a model folder or hub id of the library the backbone is built on).

    Layer-wise learning-rate decay (the recognition task's ``layer_decay``) needs ``num_layer_groups``
    (the depth L) and ``layer_group(name)``: 0 for the input embedding, 1..L for the blocks,
    L + 1 for what follows them (the head is always L + 1). None: the backbone has no such order.
    """

    num_segments: int
    num_features: int
    head: ClipHead
    initialised_from: str
    # forward_features gives one vector per frame ([N*T, C]), which the head averages over T
    frame_features: bool = False
    input_size: int | None = None  # set by models whose weights fix the frame size
    weights_allow_missing: tuple[str, ...] = ("head.",)
    weights_strict: bool = False
    num_layer_groups: int | None = None

    @property
    def weights_name(self) -> str:
        return type(self).__name__

    def library_weights(self) -> tuple[str, object] | None:
        """``(label, weight-enum member)`` of the library weights ``model.pretrained=true`` loads; None: none exist."""
        return None

    def adapt_weights(self, state: dict) -> dict:
        """A loaded state dict in this module's key names (and shapes); the default keeps it as it is."""
        return state

    def named_weights(self, source: str, local_files_only: bool) -> dict | None:
        """The state dict of ``model.pretrained=<source>`` when ``source`` is no file: a model folder or hub id
        the backbone's library reads (from its local cache only with ``local_files_only``). None: the
        backbone reads state-dict files only. A source it cannot read is an error naming ``model.pretrained``."""
        return None

    def layer_group(self, name: str) -> int:
        """The depth group (0 .. num_layer_groups + 1) of parameter ``name`` (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} has no layer order (num_layer_groups is None)")

    def check_clip(self, x: torch.Tensor) -> None:
        """Refuse, naming the setting, a clip of another shape than the model was built for."""
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch [N, T, 3, H, W], got shape {tuple(x.shape)}")
        t = x.shape[1]
        if t != self.num_segments:
            raise ValueError(
                f"{type(self).__name__}: clip has {t} frames, model was built for num_segments={self.num_segments}"
            )
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"{type(self).__name__}: frames are {tuple(x.shape[-2:])}, model was built for "
                f"input_size={self.input_size} (model.input_size, normally data.input_size)"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(feats, self.num_segments if self.frame_features else 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_clip(x)
        return self.forward_head(self.forward_features(x))


def check_frames(name: str, num_segments: int, ok: bool, need: str) -> None:
    """Refuse at build time a frame count the architecture cannot take."""
    if not ok:
        raise ValueError(f"model={name}: num_segments={num_segments} (data.num_segments) is not allowed: {need}")
