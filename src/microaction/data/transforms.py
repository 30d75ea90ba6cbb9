"""Clip transforms. A clip is a uint8 tensor [T, 3, H, W]; one random draw per clip
so every frame gets the same crop and flip. Normalisation happens after the batch
reaches the device (see ``normalize``), so batches travel as uint8.

The crops take an optional ``centre`` (x, y as fractions of the frame's width and height; a person's
box centre, ``data.person_crop``): the crop is then placed around it (as far as the frame allows)
instead of around the frame's centre (evaluation) or at a random position (training).
"""

from __future__ import annotations

import math
import random
from typing import Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _origin(length: int, crop: int, centre: float) -> int:
    """Where a crop of ``crop`` pixels starts on an axis of ``length`` so that its middle lies at ``centre``
    (a fraction of the axis), moved inside the axis when it would reach past an end."""
    return min(max(int(round(centre * length - crop / 2)), 0), max(length - crop, 0))


class MultiScaleCrop:
    """Crop with width and height each drawn from ``scales`` x short side
    (neighbouring scales only, so the aspect ratio stays moderate), at a random
    position (around ``centre`` when given), then resize to ``size``; flip
    horizontally with ``flip_p``."""

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

    def __call__(self, clip: torch.Tensor, centre: tuple[float, float] | None = None) -> torch.Tensor:
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
        if centre is None:
            top = random.randint(0, h - ch)
            left = random.randint(0, w - cw)
        else:
            top, left = _origin(h, ch, centre[1]), _origin(w, cw, centre[0])
        clip = clip[:, :, top : top + ch, left : left + cw]
        clip = F.resize(clip, list(self.size), antialias=True)
        if random.random() < self.flip_p:
            clip = clip.flip(-1)
        return clip.contiguous()


def _cover(clip: torch.Tensor, ch: int, cw: int) -> torch.Tensor:
    """``clip`` enlarged (aspect kept) just enough to hold a ch x cw crop; unchanged when it does."""
    _, _, h, w = clip.shape
    if h < ch or w < cw:
        scale = max(ch / h, cw / w)
        clip = F.resize(clip, [math.ceil(h * scale), math.ceil(w * scale)], antialias=True)
    return clip


class CenterCrop:
    """Centre crop to ``size`` (the frames were already scaled to the short side); around ``centre`` when
    given."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, clip: torch.Tensor, centre: tuple[float, float] | None = None) -> torch.Tensor:
        ch, cw = self.size
        clip = _cover(clip, ch, cw)
        if centre is None:
            return F.center_crop(clip, [ch, cw]).contiguous()
        _, _, h, w = clip.shape
        top, left = _origin(h, ch, centre[1]), _origin(w, cw, centre[0])
        return clip[:, :, top : top + ch, left : left + cw].contiguous()


class ThreeCrop:
    """Three crops of ``size`` along the frame's long side (portrait: top, middle, bottom; landscape: left,
    middle, right), each centred on the short side (on ``centre``'s coordinate there when given): the
    standard three-crop test, which together sees the whole long side. Returns [3, T, 3, h, w]."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, clip: torch.Tensor, centre: tuple[float, float] | None = None) -> torch.Tensor:
        ch, cw = self.size
        clip = _cover(clip, ch, cw)
        _, _, h, w = clip.shape
        cx, cy = centre if centre is not None else (0.5, 0.5)
        if h >= w:
            left = _origin(w, cw, cx)
            spots = [(top, left) for top in (0, (h - ch) // 2, h - ch)]
        else:
            top = _origin(h, ch, cy)
            spots = [(top, left) for left in (0, (w - cw) // 2, w - cw)]
        return torch.stack([clip[:, :, t : t + ch, x : x + cw] for t, x in spots]).contiguous()


def eval_crop(size: int | Sequence[int], crops: int) -> CenterCrop | ThreeCrop:
    """The evaluation crop of ``data.test_views.crops``: the centre crop (1) or three along the long side (3)."""
    return ThreeCrop(size) if crops == 3 else CenterCrop(size)


def view_clips(clip: torch.Tensor, num_segments: int, crop: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Test-time views of ``clip`` ([K x T, 3, H, W]: K temporal clips of T frames one after the other): each
    temporal clip cropped alone by ``crop`` (one crop [T, 3, h, w], or several [C, T, 3, h, w]), all of them
    as [K x C, T, 3, h, w]."""
    parts = [crop(part) for part in clip.split(num_segments)]
    return torch.cat([p if p.ndim == 5 else p.unsqueeze(0) for p in parts])


def normalize(
    video: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float in ImageNet normalisation."""
    m = torch.tensor(mean, device=video.device, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, device=video.device, dtype=torch.float32).view(3, 1, 1)
    return (video.float().div_(255.0) - m) / s
