"""Video Swin-T (Liu et al., CVPR 2022) from torchvision (``swin3d_t``), not rewritten.

torchvision's network is used whole up to its pooled features; its Kinetics-400
classifier is replaced by the shared head. ``model.pretrained=true`` loads
torchvision's ``Swin3D_T_Weights.KINETICS400_V1`` (cached or downloaded).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.video import Swin3D_T_Weights, swin_transformer as tv_swin

from .heads import ClipClassifier, check_frames, load_pretrained, make_head
from .registry import register_model


def _kinetics_state() -> tuple[dict, str]:
    weights = Swin3D_T_Weights.KINETICS400_V1
    return weights.get_state_dict(progress=False), f"torchvision {weights}"


class VideoSwin(ClipClassifier):
    def __init__(
        self,
        num_classes: int = 52,
        num_segments: int = 32,
        embed_dim: int | None = 300,
        embed_hidden: int = 300,
        dropout: float = 0.5,
        drop_path: float = 0.1,
        swin_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: tuple[int, int, int] = (8, 7, 7),
        patch_size: tuple[int, int, int] = (2, 4, 4),
        pretrained: bool | str = False,
    ):
        super().__init__()
        check_frames("vswin_t", num_segments, num_segments % patch_size[0] == 0,
                     f"patches span {patch_size[0]} frames; use a multiple of it")
        self.num_segments = num_segments
        # torchvision's swin3d_t is exactly these arguments at their defaults
        self.backbone = tv_swin.SwinTransformer3d(
            patch_size=list(patch_size), embed_dim=swin_dim, depths=list(depths), num_heads=list(num_heads),
            window_size=list(window_size), stochastic_depth_prob=drop_path,
        )
        self.num_features = self.backbone.num_features
        self.backbone.head = nn.Identity()
        self.head = make_head(self.num_features, num_classes, dropout, embed_dim, embed_hidden)
        load_pretrained(
            self,
            pretrained,
            "Video Swin-T",
            builtin=_kinetics_state,
            # torchvision's keys lack our "backbone." prefix; its own head is dropped
            adapt=lambda state: {
                (k if k.startswith(("backbone.", "head.")) else f"backbone.{k}"): v
                for k, v in state.items()
                if not k.startswith("head.") or k.startswith("head.fc.") or k.startswith("head.embed.")
            },
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


register_model("vswin_t")(VideoSwin)
