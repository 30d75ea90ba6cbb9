"""MANet and its ablations (TSN, TSM, TIN) as one 2D ResNet with switches.

Every residual block gets, on its residual branch before the first conv, an
optional squeeze-and-excitation followed by an optional temporal shift; the
shortcut is untouched. ``se=True, shift=True`` is MANet, ``shift=True`` alone
is TSM, neither is TSN; ``interlace=True`` puts TIN's learned temporal
interlacing where the shift would be (TIN). Features are per frame; the shared
head averages its outputs over the T frames.

Weights: torchvision's ImageNet ResNets (``model.pretrained=true``), or a file in
torchvision's key names (``conv1``, ``layer1.0.conv1``, ...) or in this module's.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
from torchvision.models import resnet

from .base import ClipClassifier
from .registry import register_model
from .squeeze_excite import SqueezeExcite
from .temporal_interlace import TemporalInterlace
from .temporal_shift import TemporalShift


def _resnet10(weights=None) -> resnet.ResNet:
    """ResNet-18 with one basic block per stage (no published weights): trains from scratch in
    minutes on a CPU, which is what the procedural dataset's CPU comparison needs."""
    if weights is not None:
        raise ValueError("ResNet-10 has no pretrained weights")
    return resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1])


_RESNETS = {
    10: (_resnet10, None),
    18: (resnet.resnet18, "ResNet18_Weights"),
    34: (resnet.resnet34, "ResNet34_Weights"),
    50: (resnet.resnet50, "ResNet50_Weights"),
    101: (resnet.resnet101, "ResNet101_Weights"),
}

# torchvision's key names -> this module's: the stem, and each block's first conv (now inside ResidualPrefix)
_TORCHVISION_KEYS = (
    (re.compile(r"^conv1\."), "stem.0."),
    (re.compile(r"^bn1\."), "stem.1."),
    (re.compile(r"^(layer\d+\.\d+)\.conv1\.(weight|bias)$"), r"\1.conv1.conv.\2"),
)


class ResidualPrefix(nn.Module):
    """SE then temporal shift (or interlacing), then the block's original first conv."""

    def __init__(self, conv: nn.Conv2d, se: nn.Module | None, shift: nn.Module | None):
        super().__init__()
        self.se = se
        self.shift = shift
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.se is not None:
            x = self.se(x)
        if self.shift is not None:
            x = self.shift(x)
        return self.conv(x)


class TemporalResNet(ClipClassifier):
    """Input [N, T, 3, H, W] -> per-frame features [N*T, C] (``model.depth`` 10, 18, 34, 50 or 101)."""

    frame_features = True
    # strict: a deeper ResNet's file has every key of a shallower one; its extra blocks must not pass unnoticed
    weights_strict = True
    # what a torchvision ResNet lacks: the head, SE and the temporal modules start from their initialisation
    weights_allow_missing = ("head.", "conv1.se.", "conv1.shift.")

    def __init__(
        self,
        num_segments: int,
        depth: int = 50,
        shift: bool = True,
        se: bool = True,
        shift_div: int = 8,
        se_ratio: int = 4,
        interlace: bool = False,
        interlace_div: int = 4,
    ):
        super().__init__()
        if shift and interlace:
            raise ValueError("model.shift and model.interlace both fill the temporal slot of a block; choose one")
        if depth not in _RESNETS:
            raise ValueError(f"model.depth={depth}: choose one of {sorted(_RESNETS)}")
        self.num_segments = num_segments
        self.depth = depth
        net = _RESNETS[depth][0](weights=None)
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in stage:
                channels = block.conv1.in_channels
                temporal = None
                if shift:
                    temporal = TemporalShift(num_segments, shift_div)
                elif interlace:
                    temporal = TemporalInterlace(channels, num_segments, interlace_div)
                block.conv1 = ResidualPrefix(block.conv1, SqueezeExcite(channels, se_ratio) if se else None, temporal)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.num_features = net.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, 3, H, W] -> pooled per-frame features [N*T, C]."""
        x = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return x.mean(dim=(2, 3))

    @property
    def weights_name(self) -> str:
        return f"ResNet-{self.depth}"

    def library_weights(self) -> tuple[str, object]:
        weights = _RESNETS[self.depth][1]
        if weights is None:
            raise ValueError(
                f"model.depth={self.depth}: no ImageNet weights exist for ResNet-{self.depth}; "
                "use model.pretrained=false or a file"
            )
        return "imagenet", getattr(resnet, weights).IMAGENET1K_V1

    def adapt_weights(self, state: dict) -> dict:
        """torchvision's key names to this module's (keys already in this module's pass as they are); the
        ImageNet classifier (``fc.``) is dropped."""
        out = {}
        for key, value in state.items():
            if key.startswith("fc."):
                continue
            for pattern, repl in _TORCHVISION_KEYS:
                key = pattern.sub(repl, key)
            out[key] = value
        return out


# The methods are the network with their switches fixed by the name; `temporal_resnet` leaves every switch
# free (e.g. SE without shift) and is not a method of its own.
_FAMILY = dict(frames=8, size=224, family="2D CNN")
register_model("tsn", fixed=dict(shift=False, se=False, interlace=False), method="TSN R50", published_params_m=24.3,
               source="mmaction2 TSN-R50 (ResNet-50 + K400 fc)", **_FAMILY)(TemporalResNet)
register_model("tsm", fixed=dict(shift=True, se=False, interlace=False), method="TSM R50", published_params_m=24.3,
               source="TSM paper / mmaction2 TSM-R50", **_FAMILY)(TemporalResNet)
register_model("tin", fixed=dict(shift=False, se=False, interlace=True), method="TIN R50", published_params_m=24.3,
               source="TIN paper: TSM-R50 size plus the offset nets", **_FAMILY)(TemporalResNet)
register_model("manet", fixed=dict(shift=True, se=True, interlace=False), method="MANet R50",
               source="MA-52 paper (TSM-R50 + SE + embedding head)", **_FAMILY)(TemporalResNet)
register_model("temporal_resnet", frames=8, size=224)(TemporalResNet)
