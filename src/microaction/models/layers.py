"""Layers more than one backbone uses, so that no backbone imports from another.

Transformer pieces (TimeSformer, UniFormer): multi-head self-attention, the MLP, drop path
(stochastic depth per sample) and its linear schedule over blocks, patch embeddings.
3D ResNet pieces (I3D, SlowFast): the bottleneck on ``[N, C, T, H, W]`` and a stage of them,
with module names of torchvision's 2D ResNet so 2D ImageNet weights map key for key.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import StochasticDepth

# --- transformer pieces ----------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention over ``[B, N, C]`` tokens (timm's key names: ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear on the last dimension."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(StochasticDepth):
    """Drop a residual branch for whole samples with probability ``p`` in training (stochastic depth)."""

    def __init__(self, p: float):
        super().__init__(p, "row")


def drop_path_rates(rate: float, blocks: int) -> list[float]:
    """Drop-path probabilities rising linearly from 0 to ``rate`` over ``blocks`` blocks (plain floats, so
    they can be computed on the meta device)."""
    return [rate * i / max(blocks - 1, 1) for i in range(blocks)]


class PatchEmbed2d(nn.Module):
    """Frames -> token sequences: a ``patch_size`` strided Conv2d, ``[B, 3, H, W]`` -> ``[B, P, D]``."""

    def __init__(self, in_channels: int, width: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class PatchEmbed3d(nn.Module):
    """Strided Conv3d, then LayerNorm over channels; keeps the ``[N, C, T, H, W]`` layout."""

    def __init__(self, in_channels: int, out_channels: int, kernel, stride, padding=0):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, out_channels, kernel, stride, padding)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


# --- 3D ResNet pieces ------------------------------------------------------------------------------------------

R50_LAYERS = (3, 4, 6, 3)


class Bottleneck3d(nn.Module):
    """ResNet bottleneck on [N, C, T, H, W]; ``temporal_kernel`` (1 or 3) is the
    first 1x1 conv's temporal extent, the only place these networks mix time."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, temporal_kernel: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(
            in_channels, planes, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False
        )
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def make_stage(in_channels: int, planes: int, blocks: int, stride: int, temporal_kernels) -> nn.Sequential:
    """A stage of ``Bottleneck3d``; ``temporal_kernels``: an int for every block, or one per block."""
    if isinstance(temporal_kernels, int):
        temporal_kernels = [temporal_kernels] * blocks
    layers = []
    for i in range(blocks):
        layers.append(Bottleneck3d(in_channels, planes, stride if i == 0 else 1, temporal_kernels[i]))
        in_channels = planes * Bottleneck3d.expansion
    return nn.Sequential(*layers)
