"""TimeSformer (Bertasius et al., ICML 2021) with divided space-time attention, ViT-B/16.

Each block attends first over time (each patch position with itself in the other
frames), then over space (each frame's patches plus the class token), then an
MLP. The temporal branch ends in a zero-initialised projection, so a network
initialised from a 2D ViT starts out as that ViT applied per frame. No
maintained package in this environment provides it (timm has no video models),
so it is written here.

``model.pretrained=/path/to/vit.pth``: an ImageNet ViT-B/16 state dict with
timm's key names (``blocks.0.attn.qkv.weight``, ...) initialises the spatial
parts, and the temporal attention starts as a copy of the spatial one, as the
authors do; a TimeSformer state dict in this module's own key names loads as is.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import ClipClassifier, check_frames
from .layers import Attention, DropPath, Mlp, PatchEmbed2d, drop_path_rates
from .registry import register_model


class DividedBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, num_heads)
        self.temporal_fc = nn.Linear(dim, dim)
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """x: [B, 1 + P*T, D], patches ordered position-major (p0 t0, p0 t1, ...)."""
        b, _, d = x.shape
        cls, patches = x[:, :1], x[:, 1:]
        p = patches.shape[1] // t
        # time: each position's T tokens
        xt = patches.reshape(b * p, t, d)
        xt = self.temporal_fc(self.temporal_attn(self.temporal_norm1(xt)))
        patches = patches + self.drop_path(xt.reshape(b, p * t, d))
        # space: each frame's P tokens plus its own copy of the class token
        xs = patches.reshape(b, p, t, d).transpose(1, 2).reshape(b * t, p, d)
        xs = torch.cat([cls.repeat_interleave(t, 0), xs], 1)
        xs = self.attn(self.norm1(xs))
        cls_update = xs[:, :1].reshape(b, t, d).mean(1, keepdim=True)
        space = xs[:, 1:].reshape(b, t, p, d).transpose(1, 2).reshape(b, p * t, d)
        x = torch.cat([cls, patches], 1) + self.drop_path(torch.cat([cls_update, space], 1))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@register_model("timesformer", frames=8, size=224, method="TimeSformer (divided ST)", family="Transformer",
                published_params_m=121.4, source="TimeSformer paper")
class TimeSformer(ClipClassifier):
    """Clip features: the class token after the last block and norm ``[N, width]``. Its position embedding
    fixes the frame size (``input_size``) and its time embedding the frame count."""

    weights_name = "TimeSformer"
    # from a 2D ViT: the classifier and the temporal parts stay at their initialisation
    weights_allow_missing = ("head.", "time_embed", "temporal_fc")

    def __init__(
        self,
        num_segments: int,
        input_size: int,
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
    ):
        super().__init__()
        check_frames("timesformer", num_segments, num_segments >= 1, "at least one frame")
        if input_size % patch_size:
            raise ValueError(f"model.input_size={input_size} is not a multiple of model.patch_size={patch_size}")
        self.num_segments = num_segments
        self.input_size = input_size
        num_patches = (input_size // patch_size) ** 2
        self.patch_embed = PatchEmbed2d(3, width, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, width))
        self.time_embed = nn.Parameter(torch.zeros(1, num_segments, width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        rates = drop_path_rates(drop_path, depth)
        self.blocks = nn.ModuleList(DividedBlock(width, num_heads, mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.apply(self._init)
        for block in self.blocks:  # _init overwrote the zero start of the temporal branch
            nn.init.zeros_(block.temporal_fc.weight)
        self.num_features = width

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def adapt_weights(self, state: dict) -> dict:
        """A 2D ViT state dict: temporal attention and its norm start as copies of
        the spatial ones; the ViT's classifier is dropped (a TimeSformer state dict passes as it is)."""
        state = {k: v for k, v in state.items()
                 if not k.startswith("head.") or k.startswith(("head.fc.", "head.embed."))}
        for key in list(state):
            if key.startswith("blocks.") and (".attn." in key or ".norm1." in key):
                twin = key.replace(".attn.", ".temporal_attn.").replace(".norm1.", ".temporal_norm1.")
                state.setdefault(twin, state[key])
        return state

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        x = self.patch_embed(x.flatten(0, 1))  # [B*T, P, D]
        p, d = x.shape[1], x.shape[2]
        x = x + self.pos_embed[:, 1:]
        x = x.reshape(b, t, p, d).transpose(1, 2) + self.time_embed[:, None]  # [B, P, T, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, x.reshape(b, p * t, d)], 1)
        for block in self.blocks:
            x = block(x, t)
        return self.norm(x)[:, 0]

