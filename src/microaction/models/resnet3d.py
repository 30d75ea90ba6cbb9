"""3D ResNet pieces shared by I3D and SlowFast, and I3D itself.

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

from .heads import ClipClassifier, check_frames, load_pretrained, make_head
from .registry import register_model

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
    """``temporal_kernels``: an int for every block, or one per block."""
    if isinstance(temporal_kernels, int):
        temporal_kernels = [temporal_kernels] * blocks
    layers = []
    for i in range(blocks):
        layers.append(Bottleneck3d(in_channels, planes, stride if i == 0 else 1, temporal_kernels[i]))
        in_channels = planes * Bottleneck3d.expansion
    return nn.Sequential(*layers)


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


def torchvision_resnet50_state() -> tuple[dict, str]:
    weights = resnet.ResNet50_Weights.IMAGENET1K_V1
    return weights.get_state_dict(progress=False), f"torchvision {weights}"


class I3D(ClipClassifier):
    """I3D with a ResNet-50 backbone (the R50 form of the Non-local paper and
    mmaction2): conv1 5x7x7 with temporal stride 2, max pools with temporal
    stride 2 after conv1 and after res2, and 3x1x1 first convs in alternate
    blocks (res2: all, res3: 1,0,1,0, res4: 1,0,1,0,1,0, res5: 0,1,0)."""

    INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))

    def __init__(
        self,
        num_classes: int = 52,
        num_segments: int = 32,
        base_width: int = 64,
        layers: tuple[int, ...] = R50_LAYERS,
        dropout: float = 0.5,
        embed_dim: int | None = 300,
        embed_hidden: int = 300,
        pretrained: bool | str = False,
    ):
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
        self.head = make_head(self.num_features, num_classes, dropout, embed_dim, embed_hidden)
        load_pretrained(
            self,
            pretrained,
            "I3D-R50 (inflated ImageNet ResNet-50)",
            builtin=torchvision_resnet50_state,
            adapt=lambda state: inflate_state_dict(state, self.state_dict()),
        )

    def _pattern(self, stage: int, blocks: int) -> list[int]:
        # the published pattern where the stage has its standard length, all-inflated otherwise
        pattern = self.INFLATE[stage] if blocks == len(self.INFLATE[stage]) else (1,) * blocks
        return [3 if p else 1 for p in pattern]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool2(self.layer1(x))
        x = self.layer4(self.layer3(self.layer2(x)))
        return x.mean(dim=(2, 3, 4))


register_model("i3d")(I3D)
