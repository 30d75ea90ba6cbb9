"""SlowFast (Feichtenhofer et al., ICCV 2019), ResNet-50 pathways, the 4x16 setting.

From a clip of T frames the fast pathway sees all T with 1/beta of the channels,
the slow pathway every alpha-th frame (T/alpha) at full width. Time-strided
5x1x1 convolutions carry fast features into the slow pathway after the stem and
after res2, res3 and res4 (concatenated, 2 x the fast width). Temporal kernels:
slow 1x7x7 stem and 3x1x1 only in res4-res5 (earlier, the slow frames are too
far apart for temporal filters to help), fast 5x7x7 stem and 3x1x1 everywhere.
No library in this environment ships SlowFast (torchvision does not;
PyTorchVideo no longer imports), so it is written here.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import ClipClassifier, check_frames
from .layers import R50_LAYERS, make_stage
from .registry import register_model


def _stem(width: int, temporal_kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(
            3, width, (temporal_kernel, 7, 7), stride=(1, 2, 2), padding=(temporal_kernel // 2, 3, 3), bias=False
        ),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
    )


class Lateral(nn.Module):
    """Fast -> slow: 5x1x1 conv with temporal stride alpha, BN, ReLU (the authors' fusion)."""

    def __init__(self, fast_channels: int, alpha: int, fusion_kernel: int = 5):
        super().__init__()
        self.conv = nn.Conv3d(
            fast_channels, 2 * fast_channels, (fusion_kernel, 1, 1), stride=(alpha, 1, 1),
            padding=(fusion_kernel // 2, 0, 0), bias=False,
        )
        self.bn = nn.BatchNorm3d(2 * fast_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([slow, self.relu(self.bn(self.conv(fast)))], 1)


@register_model("slowfast", frames=32, size=224, method="SlowFast R50 4x16", family="3D CNN", published_params_m=34.5,
                source="SlowFast paper / mmaction2 4x16x1")
class SlowFast(ClipClassifier):
    """Clip features: the slow and fast pathways' pooled features concatenated."""

    weights_name = "SlowFast-R50"

    def __init__(
        self,
        num_segments: int,
        alpha: int = 8,
        beta_inv: int = 8,
        base_width: int = 64,
        layers: tuple[int, ...] = R50_LAYERS,
    ):
        super().__init__()
        check_frames("slowfast", num_segments, num_segments % alpha == 0,
                     f"the slow pathway takes every alpha-th frame; use a multiple of model.alpha={alpha}")
        if base_width % beta_inv:
            raise ValueError(f"model.base_width={base_width} is not divisible by model.beta_inv={beta_inv}")
        self.num_segments = num_segments
        self.alpha = alpha
        s, f = base_width, base_width // beta_inv
        self.slow_stem, self.fast_stem = _stem(s, 1), _stem(f, 5)
        self.lateral0 = Lateral(f, alpha)
        slow_t = (1, 1, 3, 3)
        slow_in, fast_in = s + 2 * f, f
        for i, blocks in enumerate(layers):
            stride = 1 if i == 0 else 2
            setattr(self, f"slow_layer{i + 1}", make_stage(slow_in, s * 2**i, blocks, stride, slow_t[i]))
            setattr(self, f"fast_layer{i + 1}", make_stage(fast_in, f * 2**i, blocks, stride, 3))
            slow_out, fast_out = 4 * s * 2**i, 4 * f * 2**i
            if i < 3:
                setattr(self, f"lateral{i + 1}", Lateral(fast_out, alpha))
                slow_in = slow_out + 2 * fast_out
            fast_in = fast_out
        self.num_features = slow_out + fast_out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [N, 3, T, H, W]
        slow, fast = self.slow_stem(x[:, :, :: self.alpha]), self.fast_stem(x)
        slow = self.lateral0(slow, fast)
        for i in range(1, 5):
            slow = getattr(self, f"slow_layer{i}")(slow)
            fast = getattr(self, f"fast_layer{i}")(fast)
            if i < 4:
                slow = getattr(self, f"lateral{i}")(slow, fast)
        return torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], 1)

