"""Video Swin-T (Liu et al., CVPR 2022) from torchvision (``swin3d_t``), not rewritten.

torchvision's network is used whole up to its pooled features; its Kinetics-400
classifier is replaced by the shared head. ``model.pretrained=true`` loads
torchvision's ``Swin3D_T_Weights.KINETICS400_V1`` (cached or downloaded; ``required``: an error
if they cannot be had).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.video import Swin3D_T_Weights, swin_transformer as tv_swin

from .base import ClipClassifier, check_frames
from .registry import register_model


# pretrained.library_state_dict: from torchvision's cache, else downloaded unless MICROACTION_OFFLINE=1
KINETICS400 = ("kinetics400", Swin3D_T_Weights.KINETICS400_V1)


@register_model("vswin_t", frames=32, size=224, method="Video Swin-T", family="Transformer", published_params_m=28.2,
                source="Video Swin paper / torchvision swin3d_t")
class VideoSwin(ClipClassifier):
    """Clip features: torchvision's pooled features ``[N, 8 * swin_dim]``."""

    weights_name = "Video Swin-T"

    def __init__(
        self,
        num_segments: int,
        drop_path: float = 0.1,
        swin_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: tuple[int, int, int] = (8, 7, 7),
        patch_size: tuple[int, int, int] = (2, 4, 4),
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

    def library_weights(self) -> tuple[str, object]:
        return KINETICS400

    def adapt_weights(self, state: dict) -> dict:
        """torchvision's keys lack this module's "backbone." prefix; its own classifier is dropped."""
        return {
            (k if k.startswith(("backbone.", "head.")) else f"backbone.{k}"): v
            for k, v in state.items()
            if not k.startswith("head.") or k.startswith("head.fc.") or k.startswith("head.embed.")
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.transpose(1, 2))  # torchvision's layout [N, 3, T, H, W]
