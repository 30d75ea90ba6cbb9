"""Temporal interlacing (TIN, Shao et al., AAAI 2020): a learned, fractional temporal shift.

Where TSM moves fixed channel groups by exactly one frame, TIN lets a small
network look at the clip and choose, per clip, how far (a real number of frames,
in (-4, 4)) each group of channels moves, and how strongly each frame's shifted
features count. A fractional shift is linear interpolation between the two
nearest frames, so the offsets get gradients. Groups come in +/- pairs
(interlacing): the second half of the groups moves by the negated offsets.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def fractional_shift(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """x: [N, T, G, C, H, W]; offsets: [N, G] in frames. Output frame t of group g
    reads input frame t + offsets[n, g], interpolated linearly, zero outside the clip."""
    n, t, g = x.shape[:3]
    pos = torch.arange(t, device=x.device, dtype=x.dtype)[None, :, None] + offsets[:, None, :]  # [N, T, G]
    lo = pos.floor()
    frac = pos - lo
    out = torch.zeros_like(x)
    for idx, weight in ((lo, 1 - frac), (lo + 1, frac)):
        valid = (idx >= 0) & (idx <= t - 1)
        index = idx.clamp(0, t - 1).long()
        picked = torch.gather(x, 1, index[..., None, None, None].expand_as(x))
        out = out + picked * (weight * valid)[..., None, None, None]
    return out


class TemporalInterlace(nn.Module):
    """On ``[N*T, C, H, W]``: the first ``C // shift_div`` channels are split into
    ``2 * groups`` groups, shifted by learned per-clip offsets (+o_g, then -o_g)
    and reweighted per frame; the other channels pass unchanged."""

    def __init__(self, channels: int, num_segments: int, shift_div: int = 4, groups: int = 2):
        super().__init__()
        self.num_segments = num_segments
        self.shift_div = shift_div
        self.groups = groups
        self.folds = channels // shift_div
        if self.folds < 2 * groups or self.folds % (2 * groups):
            raise ValueError(
                f"TIN: {channels} channels / shift_div={shift_div} = {self.folds}, not a positive multiple of "
                f"2 * groups = {2 * groups} (model.shift_div)"
            )
        # offsets from the clip's channel-pooled temporal profile
        self.offset_conv = nn.Conv1d(self.folds, 1, 3, padding=1)
        self.offset_fc1 = nn.Linear(num_segments, num_segments)
        self.offset_fc2 = nn.Linear(num_segments, groups)
        # per-frame weights, one per group, in (0, 2)
        self.weight_conv = nn.Conv1d(self.folds, groups, 3, padding=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Start as a half-frame shift with unit weights (TIN's initialisation),
        # close to TSM, so ImageNet features are not scrambled at step 0.
        nn.init.zeros_(self.offset_fc2.weight)
        start = 0.5 / 4 + 0.5  # sigmoid value giving an offset of 0.5 frames
        nn.init.constant_(self.offset_fc2.bias, math.log(start / (1 - start)))
        nn.init.zeros_(self.weight_conv.weight)
        nn.init.zeros_(self.weight_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        t = self.num_segments
        if nt % t:
            raise ValueError(f"batch of {nt} frames is not a multiple of num_segments={t}")
        n = nt // t
        moved = x[:, : self.folds].reshape(n, t, self.folds, h, w)
        profile = moved.mean(dim=(3, 4)).transpose(1, 2)  # [N, folds, T]
        o = self.offset_conv(profile).view(n, t)
        o = self.offset_fc2(torch.relu(self.offset_fc1(o)))  # [N, groups]
        o = 4 * (torch.sigmoid(o) - 0.5)
        weights = 2 * torch.sigmoid(self.weight_conv(profile)).transpose(1, 2)  # [N, T, groups]
        g2 = 2 * self.groups
        shifted = fractional_shift(moved.reshape(n, t, g2, self.folds // g2, h, w), torch.cat([o, -o], 1))
        shifted = shifted * torch.cat([weights, weights], 2)[..., None, None, None]
        shifted = shifted.reshape(nt, self.folds, h, w)
        return torch.cat([shifted, x[:, self.folds :]], 1)

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, shift_div={self.shift_div}, groups={self.groups}"
