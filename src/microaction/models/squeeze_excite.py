"""Squeeze-and-excitation on each frame's feature map."""

from __future__ import annotations

import torch
import torch.nn as nn


class SqueezeExcite(nn.Module):
    """Spatial average -> Linear(C, C/r) -> ReLU -> Linear(C/r, C) -> sigmoid -> scale.
    Both linears without bias, as in MANet."""

    def __init__(self, channels: int, ratio: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // ratio, bias=False)
        self.fc2 = nn.Linear(channels // ratio, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(2, 3))
        z = torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))
        return x * z[:, :, None, None]
