"""I3D with a ResNet-50 backbone, and the inflation of 2D ImageNet weights to it.

Module names follow torchvision's 2D ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
``downsample.0``, ...) so a 2D ImageNet state dict maps key for key onto the 3D
network and can be inflated: each 2D kernel is repeated over the temporal
kernel size and divided by it, so a clip of identical frames gives the 2D
network's activations (the I3D paper's "boring video" argument).

torchvision's own 3D ResNets (r3d_18, mc3_18, r2plus1d_18) are ResNet-18s with
full 3x3x3 kernels and no R50 variant, so none of them is I3D-R50.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torchvision.models import resnet

from .base import ClipClassifier, check_frames
from .layers import R50_LAYERS, make_stage
from .registry import register_model


def inflate_state_dict(state2d: dict, own: dict) -> dict:
    """Map a 2D ResNet state dict onto a 3D network with the same key names:
    conv kernels [O, I, h, w] -> [O, I, t, h, w] repeated over t and divided by t."""
    out = {}
    for key, value in state2d.items():
        if key not in own:
            continue
        target = own[key]
        if value.ndim == 4 and target.ndim == 5 and target.shape[:2] + target.shape[3:] == value.shape:
            t = target.shape[2]
            value = value.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        out[key] = value
    return out


# torchvision's ImageNet ResNet-50, inflated (pretrained.library_state_dict: cache, else download unless offline)
IMAGENET_R50 = ("imagenet", resnet.ResNet50_Weights.IMAGENET1K_V1)


@register_model("i3d", frames=32, size=224, method="I3D R50", family="3D CNN", published_params_m=28.0,
                source="mmaction2 I3D-R50 32x2x1")
class I3D(ClipClassifier):
    """I3D with a ResNet-50 backbone (the R50 form of the Non-local paper and
    mmaction2): conv1 5x7x7 with temporal stride 2, max pools with temporal
    stride 2 after conv1 and after res2, and 3x1x1 first convs in alternate
    blocks (res2: all, res3: 1,0,1,0, res4: 1,0,1,0,1,0, res5: 0,1,0)."""

    INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
    weights_name = "I3D-R50 (inflated ImageNet ResNet-50)"

    def __init__(self, num_segments: int, base_width: int = 64, layers: tuple[int, ...] = R50_LAYERS):
        super().__init__()
        t_after_pools = math.ceil(math.ceil(num_segments / 2) / 2)
        check_frames("i3d", num_segments, t_after_pools >= 2, "I3D halves time three times; it needs at least 5 frames")
        self.num_segments = num_segments
        self.conv1 = nn.Conv3d(3, base_width, (5, 7, 7), stride=(2, 2, 2), padding=(2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(2, 2, 2), padding=(0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        inflate = [self._pattern(i, n) for i, n in enumerate(layers)]
        self.layer1 = make_stage(base_width, base_width, layers[0], 1, inflate[0])
        self.layer2 = make_stage(base_width * 4, base_width * 2, layers[1], 2, inflate[1])
        self.layer3 = make_stage(base_width * 8, base_width * 4, layers[2], 2, inflate[2])
        self.layer4 = make_stage(base_width * 16, base_width * 8, layers[3], 2, inflate[3])
        self.num_features = base_width * 32

    def library_weights(self) -> tuple[str, object]:
        return IMAGENET_R50

    def adapt_weights(self, state: dict) -> dict:
        """A 2D ResNet-50 state dict inflated to 3D (an I3D state dict passes as it is)."""
        return inflate_state_dict(state, self.state_dict())

    def _pattern(self, stage: int, blocks: int) -> list[int]:
        # the published pattern where the stage has its standard length, all-inflated otherwise
        pattern = self.INFLATE[stage] if blocks == len(self.INFLATE[stage]) else (1,) * blocks
        return [3 if p else 1 for p in pattern]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [N, 3, T, H, W]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool2(self.layer1(x))
        x = self.layer4(self.layer3(self.layer2(x)))
        return x.mean(dim=(2, 3, 4))

