"""Heads on a stride-32 trunk: the deconvolution heatmap head and the per-joint confidence
head of algebraic triangulation."""

from __future__ import annotations

from torch import Tensor, nn


class DeconvHead(nn.Module):
    """Features [N, C_in, h, w] -> maps [N, out_channels, h * 2^n, w * 2^n].

    `num_deconv` transposed convolutions (kernel 4, stride 2, padding 1: each exactly doubles
    the size) with BatchNorm and ReLU, then a 1x1 convolution. The paper's head is 3 x 256.
    """

    def __init__(self, in_channels: int, out_channels: int, num_deconv: int = 3,
                 channels: int = 256) -> None:
        super().__init__()
        if num_deconv < 0 or channels <= 0 or out_channels <= 0:
            raise ValueError(f"DeconvHead needs num_deconv >= 0 and positive channels, got "
                             f"num_deconv={num_deconv}, channels={channels}, "
                             f"out_channels={out_channels}")
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, kernel_size=4,
                                   stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.deconvs = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels if num_deconv else in_channels, out_channels, 1)
        self.num_deconv = num_deconv
        self._init_weights()

    def _init_weights(self) -> None:
        # Small weights: the first heatmaps are nearly flat, so soft-argmax starts at the
        # centre of the volume instead of at a random corner.
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.final(self.deconvs(features))


class ConfidenceHead(nn.Module):
    """Features [N, C_in, h, w] -> confidences [N, J] in (0, 1): global average pooling, a
    two-layer MLP, sigmoid (computed in float32, also under autocast)."""

    def __init__(self, in_channels: int, num_joints: int, hidden: int = 256) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, num_joints))

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(self.pool(features).flatten(1)).float().sigmoid()
