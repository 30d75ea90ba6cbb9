"""Counting parameters and FLOPs of a registered model at its standard input (docs/model_zoo.md and its tests).

Published parameter counts are of the backbone with its Kinetics-400 classifier
(the form in which the papers and mmaction2's model zoo report them), so the
comparison builds each model with a 400-class ``fc`` and no embedding branch.
C3D's published 78.4 M has a 101-class classifier; with 400 classes it is 1.2 M
more, inside the tolerance. The standard input (frames, size) and the published
sizes are the registry's (``register_model`` in each backbone file).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model


def build_standard(name: str, num_classes: int = 400, embed_dim: int | None = None, device="meta") -> nn.Module:
    """The model at its standard setting, on the meta device by default (no memory, no init cost)."""
    with torch.device(device):
        return create_model(name, num_classes=num_classes, embed_dim=embed_dim)


def count_params(model: nn.Module, exclude_head: bool = False) -> int:
    total = sum(p.numel() for p in model.parameters())
    if exclude_head:
        total -= sum(p.numel() for p in model.head.parameters())
    return total


def count_flops(model: nn.Module, frames: int, size: int, device="meta") -> int:
    """FLOPs of one clip's forward pass, as torch.utils.flop_counter counts them
    (a multiply-add is 2 FLOPs)."""
    model.eval()
    x = torch.empty(1, frames, 3, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()

