"""UniFormer (Li et al., ICLR 2022), the video model, small variant (UniFormer-S).

Four stages. The first two use local relation aggregation: a depthwise 5x5x5
convolution plays the role of attention among neighbouring tokens, which is
cheap where the token grid is large. The last two use global self-attention over
all T x H x W tokens. Every block starts with a depthwise 3x3x3 convolution as a
dynamic position encoding. The stem merges 2 frames x 4 x 4 pixels per token.
Not in torchvision or another maintained package here, so it is written here.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import ClipClassifier, check_frames
from .layers import Attention, DropPath, Mlp, PatchEmbed3d, drop_path_rates
from .registry import register_model


class ConvMlp(nn.Module):
    """The MLP as 1x1x1 convolutions, on the ``[N, C, T, H, W]`` layout of the local blocks."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv3d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LocalBlock(nn.Module):
    """Local MHRA: BN -> 1x1x1 -> depthwise 5x5x5 (token affinity) -> 1x1x1, then a conv MLP."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.attn = nn.Conv3d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GlobalBlock(nn.Module):
    """Global MHRA: multi-head self-attention over all tokens of the clip, then an MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        b, c, t, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens.transpose(1, 2).reshape(b, c, t, h, w)


@register_model("uniformer", frames=16, size=224, method="UniFormer-S", family="Transformer", published_params_m=21.4,
                source="UniFormer paper, video UniFormer-S", defaults=dict(dropout=0.0))
class UniFormer(ClipClassifier):
    """Clip features: the last stage's normalised tokens averaged ``[N, widths[-1]]``."""

    weights_name = "UniFormer-S"

    def __init__(
        self,
        num_segments: int,
        widths: tuple[int, ...] = (64, 128, 320, 512),
        depths: tuple[int, ...] = (3, 4, 8, 3),
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
    ):
        super().__init__()
        check_frames("uniformer", num_segments, num_segments >= 1, "at least one frame")
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError(f"model.widths and model.depths need 4 stages, got {list(widths)} and {list(depths)}")
        for w in widths[2:]:
            if w % head_dim:
                raise ValueError(f"model.head_dim={head_dim} does not divide the attention stage width {w}")
        self.num_segments = num_segments
        rates = drop_path_rates(drop_path, sum(depths))
        self.patch_embed1 = PatchEmbed3d(3, widths[0], (3, 4, 4), (2, 4, 4), (1, 0, 0))
        self.patch_embed2, self.patch_embed3, self.patch_embed4 = (
            PatchEmbed3d(widths[i], widths[i + 1], (1, 2, 2), (1, 2, 2)) for i in range(3)
        )
        start = 0
        for i, (w, d) in enumerate(zip(widths, depths)):
            r = rates[start : start + d]
            blocks = (
                [LocalBlock(w, mlp_ratio, r[j]) for j in range(d)]
                if i < 2
                else [GlobalBlock(w, w // head_dim, mlp_ratio, r[j]) for j in range(d)]
            )
            setattr(self, f"blocks{i + 1}", nn.Sequential(*blocks))
            start += d
        self.norm = nn.BatchNorm3d(widths[-1])
        self.num_features = widths[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [N, 3, T, H, W]
        for i in range(1, 5):
            x = getattr(self, f"blocks{i}")(getattr(self, f"patch_embed{i}")(x))
        return self.norm(x).mean(dim=(2, 3, 4))

