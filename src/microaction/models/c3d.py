"""C3D (Tran et al., ICCV 2015): eight 3x3x3 convolutions and two 4096-wide FC layers
on 16 x 112 x 112 clips. Layer names (conv1, conv2, conv3a, ..., fc6, fc7) are
the ones of the common PyTorch port of the Sports-1M weights, so such a file
loads with ``model.pretrained=/path/to/c3d.pickle`` (its fc8 is dropped).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import ClipClassifier, check_frames
from .registry import register_model


@register_model("c3d", frames=16, size=112, method="C3D", family="3D CNN", published_params_m=78.4,
                source="mmaction2 C3D (conv1..fc7 + a 101-class classifier)")
class C3D(ClipClassifier):
    """Clip features from fc7 ``[N, fc_dim]``; ``dropout`` (the head's rate) also follows fc6."""

    weights_name = "C3D"

    def __init__(self, num_segments: int, base_width: int = 64, fc_dim: int = 4096, dropout: float = 0.5):
        super().__init__()
        # pool2..pool5 each halve time (floor), so fewer than 16 frames reach pool5 with no time left
        check_frames("c3d", num_segments, num_segments >= 16,
                     "C3D pools time by 2 four times; it needs at least 16 frames")
        self.num_segments = num_segments
        w = base_width
        conv = lambda i, o: nn.Conv3d(i, o, 3, padding=1)  # noqa: E731
        self.conv1, self.conv2 = conv(3, w), conv(w, 2 * w)
        self.conv3a, self.conv3b = conv(2 * w, 4 * w), conv(4 * w, 4 * w)
        self.conv4a, self.conv4b = conv(4 * w, 8 * w), conv(8 * w, 8 * w)
        self.conv5a, self.conv5b = conv(8 * w, 8 * w), conv(8 * w, 8 * w)
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.pool = nn.MaxPool3d(2, 2)
        self.pool5 = nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        # 112 x 112 input leaves 4 x 4 after pool5; other sizes are pooled to it so fc6 keeps its shape
        self.fit = nn.AdaptiveAvgPool3d((1, 4, 4))
        self.fc6 = nn.Linear(8 * w * 16, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        self.num_features = fc_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [N, 3, T, H, W]
        r = self.relu
        x = self.pool1(r(self.conv1(x)))
        x = self.pool(r(self.conv2(x)))
        x = self.pool(r(self.conv3b(r(self.conv3a(x)))))
        x = self.pool(r(self.conv4b(r(self.conv4a(x)))))
        x = self.fit(self.pool5(r(self.conv5b(r(self.conv5a(x))))))
        x = self.drop(r(self.fc6(x.flatten(1))))
        return r(self.fc7(x))

