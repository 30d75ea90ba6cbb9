"""Clip transforms. A clip is a uint8 tensor [T, 3, H, W]; one random draw per clip
so every frame gets the same crop and flip. Normalisation happens after the batch
reaches the device (see ``normalize``), so batches travel as uint8.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import torch
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class MultiScaleCrop:
    """Crop with width and height each drawn from ``scales`` x short side
    (neighbouring scales only, so the aspect ratio stays moderate), at a random
    position, then resize to ``size``; flip horizontally with ``flip_p``."""

    def __init__(
        self,
        size: int | Sequence[int],
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        max_scale_gap: int = 1,
        flip_p: float = 0.5,
    ):
        self.size = _pair(size)
        self.scales = tuple(scales)
        self.max_scale_gap = max_scale_gap
        self.flip_p = flip_p

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _, _, h, w = clip.shape
        base = min(h, w)
        sizes = [max(1, int(base * s)) for s in self.scales]
        pairs = [
            (cw, ch)
            for i, ch in enumerate(sizes)
            for j, cw in enumerate(sizes)
            if abs(i - j) <= self.max_scale_gap
        ]
        cw, ch = random.choice(pairs)
        top = random.randint(0, h - ch)
        left = random.randint(0, w - cw)
        clip = clip[:, :, top : top + ch, left : left + cw]
        clip = F.resize(clip, list(self.size), antialias=True)
        if random.random() < self.flip_p:
            clip = clip.flip(-1)
        return clip.contiguous()


class CenterCrop:
    """Centre crop to ``size`` (the frames were already scaled to the short side)."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _, _, h, w = clip.shape
        ch, cw = self.size
        if h < ch or w < cw:
            scale = max(ch / h, cw / w)
            clip = F.resize(clip, [math.ceil(h * scale), math.ceil(w * scale)], antialias=True)
        return F.center_crop(clip, [ch, cw]).contiguous()


def normalize(
    video: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float in ImageNet normalisation."""
    m = torch.tensor(mean, device=video.device, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, device=video.device, dtype=torch.float32).view(3, 1, 1)
    return (video.float().div_(255.0) - m) / s
