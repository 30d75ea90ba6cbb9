"""The head every backbone shares, the base class that wires it, and weight loading.

A backbone's ``forward_features`` returns either per-frame features ``[N*T, C]``
(2D networks: TSN, TSM, TIN, MANet) or clip features ``[N, C]`` (3D networks and
video transformers). ``ClipHead`` turns either into class scores plus the
optional label-embedding output, averaging per-frame outputs over T, so the
loss (``loss.alpha``) and the metrics see the same thing whatever the backbone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


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
    """Base of the clip-level backbones: input ``[N, T, 3, H, W]`` ->
    ``{"logits": [N, K], "embedding": [N, D]}``.

    Subclasses set ``num_segments``, ``num_features`` and ``head`` and implement
    ``features(x)`` on ``[N, 3, T, H, W]`` (the layout of 3D convolutions)
    returning ``[N, num_features]``.
    """

    num_segments: int
    num_features: int
    head: ClipHead
    input_size: int | None = None  # set by models whose weights fix the frame size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
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
        return self.features(x.transpose(1, 2))

    def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


def make_head(
    num_features: int, num_classes: int, dropout: float, embed_dim: int | None, embed_hidden: int
) -> ClipHead:
    return ClipHead(num_features, num_classes, dropout, embed_dim, embed_hidden)


def check_frames(name: str, num_segments: int, ok: bool, need: str) -> None:
    """Refuse at build time a frame count the architecture cannot take."""
    if not ok:
        raise ValueError(f"model={name}: num_segments={num_segments} (data.num_segments) is not allowed: {need}")


def load_pretrained(
    model: nn.Module,
    pretrained: bool | str,
    name: str,
    *,
    builtin: Callable[[], dict] | None = None,
    adapt: Callable[[dict], dict] | None = None,
    allow_missing: tuple[str, ...] = ("head.",),
) -> bool:
    """Load weights into ``model`` from a state-dict file or a library's weights.

    ``pretrained``: false (random initialisation), true (``builtin()``, e.g. a
    torchvision weight enum, from its cache or a download), or a path. The
    result, random or loaded, is said in the log. Weights that cannot be obtained
    fall back to random initialisation with a warning; weights that do not fit the
    architecture are an error, since training on them silently would waste a run.
    Keys containing one of ``allow_missing`` may stay at their initialisation.
    """
    if not pretrained:
        log.info("%s: random initialisation (model.pretrained=false)", name)
        return False
    as_path = isinstance(pretrained, str) and pretrained.lower() not in ("true", "imagenet", "kinetics")
    if not as_path and builtin is None:
        log.warning(
            "%s: no library ships weights for it; pass model.pretrained=/path/to/state_dict.pth. Random initialisation",
            name,
        )
        return False
    try:
        if as_path:
            state = torch.load(Path(pretrained).expanduser(), map_location="cpu", weights_only=True)
            source = str(pretrained)
        else:
            state, source = builtin()
    except Exception as err:  # offline, missing file, corrupt download
        log.warning("%s: pretrained weights not obtainable (%s); random initialisation", name, err)
        return False
    for key in ("state_dict", "model", "module"):  # common checkpoint wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if adapt is not None:
        state = adapt(state)
    own = model.state_dict()
    shape_mismatch = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k in own and k not in shape_mismatch}
    missing = [k for k in own if k not in state and not any(a in k for a in allow_missing)]
    if missing or not state:
        raise ValueError(
            f"{source}: not a {name} state dict ({len(state)} tensors fit; missing {missing[:5]}, "
            f"wrong shape {shape_mismatch[:5]})"
        )
    model.load_state_dict(state, strict=False)
    log.info("%s: pretrained weights loaded from %s (%d tensors)", name, source, len(state))
    return True
