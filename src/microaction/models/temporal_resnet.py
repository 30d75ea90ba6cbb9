"""MANet and its ablations as one 2D ResNet with switches.

Every residual block gets, on its residual branch before the first conv, an
optional squeeze-and-excitation followed by an optional temporal shift; the
shortcut is untouched. ``se=True, shift=True`` is MANet, ``shift=True`` alone
is TSM, neither is TSN; ``interlace=True`` puts TIN's learned temporal
interlacing where the shift would be (TIN). The head works per frame and
averages over the T frames: a classifier, plus an embedding branch used by the
label-embedding loss.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models import resnet

from .heads import ClipHead
from .registry import register_model
from .squeeze_excite import SqueezeExcite
from .temporal_interlace import TemporalInterlace
from .temporal_shift import TemporalShift

log = logging.getLogger(__name__)

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


class TemporalResNet(nn.Module):
    """Input [N, T, 3, H, W] -> ``{"logits": [N, K], "embedding": [N, D]}``."""

    def __init__(
        self,
        num_classes: int = 52,
        depth: int = 50,
        num_segments: int = 8,
        shift: bool = True,
        se: bool = True,
        shift_div: int = 8,
        se_ratio: int = 4,
        interlace: bool = False,
        interlace_div: int = 4,
        dropout: float = 0.5,
        embed_dim: int | None = 300,
        embed_hidden: int = 300,
        pretrained: bool | str = False,
    ):
        super().__init__()
        if shift and interlace:
            raise ValueError("model.shift and model.interlace both fill the temporal slot of a block; choose one")
        if depth not in _RESNETS:
            raise ValueError(f"model.depth={depth}: choose one of {sorted(_RESNETS)}")
        self.num_segments = num_segments
        self.num_classes = num_classes
        net = _RESNETS[depth][0](weights=None)
        _load_imagenet(net, depth, pretrained)
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
        self.head = ClipHead(self.num_features, num_classes, dropout, embed_dim, embed_hidden)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, 3, H, W] -> pooled per-frame features [N*T, C]."""
        n, t = x.shape[:2]
        if t != self.num_segments:
            raise ValueError(f"clip has {t} frames, model was built for num_segments={self.num_segments}")
        x = x.reshape(n * t, *x.shape[2:])
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return x.mean(dim=(2, 3))

    def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(feats, self.num_segments)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


def _load_imagenet(net: nn.Module, depth: int, pretrained: bool | str) -> None:
    """``pretrained``: False, True (torchvision's ImageNet weights, from its cache
    or download), or a path to a torchvision-format state dict."""
    if not pretrained:
        log.info("ResNet-%d: random initialisation (model.pretrained=false)", depth)
        return
    if _RESNETS[depth][1] is None:
        raise ValueError(f"model.depth={depth}: no ImageNet weights exist for ResNet-{depth}; use model.pretrained=false")
    try:
        if isinstance(pretrained, str) and pretrained.lower() not in ("true", "imagenet"):
            state = torch.load(Path(pretrained).expanduser(), map_location="cpu", weights_only=True)
            source = pretrained
        else:
            weights = getattr(resnet, _RESNETS[depth][1]).IMAGENET1K_V1
            state = weights.get_state_dict(progress=False)
            source = f"torchvision {weights}"
    except Exception as err:  # offline, missing file, corrupt download
        log.warning("ResNet-%d: ImageNet weights not obtainable (%s); random initialisation", depth, err)
        return
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("fc.")]:
        raise ValueError(f"{source}: not a ResNet-{depth} state dict (missing {missing[:5]}, unexpected {unexpected[:5]})")
    log.info("ResNet-%d: ImageNet weights loaded from %s", depth, source)


def _variant(shift: bool, se: bool, interlace: bool = False):
    def build(**kwargs) -> TemporalResNet:
        for key in ("shift", "se", "interlace"):
            if key in kwargs:
                raise TypeError(f"model.{key} is fixed by the model name; use model=manet/tsm/tsn/tin")
        return TemporalResNet(shift=shift, se=se, interlace=interlace, **kwargs)

    return build


register_model("manet")(_variant(shift=True, se=True))
register_model("tsm")(_variant(shift=True, se=False))
register_model("tsn")(_variant(shift=False, se=False))
register_model("tin")(_variant(shift=False, se=False, interlace=True))
register_model("temporal_resnet")(TemporalResNet)
