"""Test-time views: a network's outputs for an evaluation clip seen several times, combined into one.

With ``data.test_views`` a batch's ``video`` is [N, V, T, 3, H, W] (V = temporal clips x spatial crops); the
network runs on the N x V views as one batch of clips and every per-clip output is averaged over V, so the
task scores, predicts and writes one row per clip as without views. A batch of [N, T, 3, H, W] goes through
unchanged.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

AVERAGES = ("logits", "softmax")


def forward_views(forward: Callable[[torch.Tensor], dict[str, torch.Tensor]], video: torch.Tensor,
                  average: str = "logits") -> dict[str, torch.Tensor]:
    """``forward(video)`` for a batch of clips [N, T, 3, H, W]; for views [N, V, T, 3, H, W] ``forward`` of the
    N x V views with every output of N x V rows averaged over the V views of each clip.

    ``average="logits"``: ``logits`` is the mean of the views' logits; ``"softmax"``: ``logits`` is the log of
    the mean of the views' softmax probabilities, so that a softmax of it gives back that mean and its argmax
    and top-k are those of the averaged probabilities. Other outputs (an embedding) are plain means."""
    if average not in AVERAGES:
        raise ValueError(f"data.test_views.average={average!r}: expected one of {AVERAGES}")
    if video.ndim != 6:
        return forward(video)
    n, v = video.shape[:2]
    out = forward(video.flatten(0, 1))
    merged = {}
    for key, value in out.items():
        if not torch.is_tensor(value) or value.ndim == 0 or value.shape[0] != n * v:
            merged[key] = value
            continue
        views = value.float().unflatten(0, (n, v))
        if key == "logits" and average == "softmax":
            merged[key] = torch.logsumexp(views.log_softmax(-1), dim=1) - math.log(v)
        else:
            merged[key] = views.mean(1)
    return merged


def view_average_of(module) -> str:
    """The averaging the attached datamodule asks for (its ``view_average``), "logits" without one."""
    trainer = getattr(module, "_trainer", None)
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    return str(getattr(dm, "view_average", "logits"))
