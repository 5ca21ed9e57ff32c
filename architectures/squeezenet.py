"""SqueezeNet and SqueezeNet-DSC adapted to 32x32 inputs (Souza 2020; Iandola et al. 2016).

The CIFAR adaptation replaces SqueezeNet 1.0's 7x7/stride-2 stem with a 3x3/stride-1
convolution, drops the dropout, and adds BatchNorm after every convolution of the Fire modules.
SqueezeNet-DSC swaps each Fire's 3x3 expand branch for a depthwise-separable convolution.
"""

from __future__ import annotations

import torch
from torch import nn

from ._blocks import ConvNormAct, DepthwiseSeparable, FeaturesClassifier
from ._registry import register_arch

PAPER_SQUEEZENET = "Iandola et al., SqueezeNet, arXiv:1602.07360 (2016)"
PAPER_DSC = "Souza, SqueezeNet-DSC, MSc dissertation, UFPE (2020); Santos et al., IJCNN 2018"


class Fire(nn.Module):
    """Squeeze to ``squeeze_chs`` with 1x1, then expand with parallel 1x1 and 3x3 branches."""

    def __init__(self, in_chs: int, squeeze_chs: int, expand1x1_chs: int, expand3x3_chs: int):
        super().__init__()
        self.squeeze = ConvNormAct(in_chs, squeeze_chs, 1, bias=True)
        self.expand1x1 = ConvNormAct(squeeze_chs, expand1x1_chs, 1, bias=True)
        self.expand3x3 = self._expand3x3(squeeze_chs, expand3x3_chs)
        self.out_chs = expand1x1_chs + expand3x3_chs

    @staticmethod
    def _expand3x3(squeeze_chs: int, out_chs: int) -> nn.Module:
        return ConvNormAct(squeeze_chs, out_chs, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], dim=1)


class FireDSC(Fire):
    """Fire whose 3x3 branch is depthwise-separable, with no BatchNorm after the depthwise conv."""

    @staticmethod
    def _expand3x3(squeeze_chs: int, out_chs: int) -> nn.Module:
        return DepthwiseSeparable(squeeze_chs, out_chs, depthwise_norm=False)


# The CIFAR macro-architecture: one row per Fire module as
# (in_chs, squeeze_chs, expand1x1_chs, expand3x3_chs); "pool" is a 2x2/stride-2 max pool.
CIFAR_LAYOUT: tuple[tuple[int, int, int, int] | str, ...] = (
    (96, 32, 64, 64),
    (128, 16, 64, 64),
    (128, 32, 128, 128),
    (256, 32, 128, 128),
    "pool",
    (256, 48, 192, 192),
    (384, 48, 192, 192),
    (384, 64, 256, 256),
    "pool",
    (512, 64, 256, 256),
)


class SqueezeNet(FeaturesClassifier):
    """SqueezeNet for 32x32 images; ``fire`` picks the Fire variant."""

    def __init__(
        self,
        fire: type[Fire] = Fire,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        layout=CIFAR_LAYOUT,
        stem_chs: int = 96,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, stem_chs, 3, bias=True, norm=False),
            nn.MaxPool2d(2, 2, ceil_mode=True),
        ]
        chs = stem_chs
        for row in layout:
            if row == "pool":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                continue
            in_chs, squeeze_chs, e1, e3 = row
            if in_chs != chs:
                raise ValueError(f"Fire row {row} expects {in_chs} input channels, gets {chs}")
            block = fire(in_chs, squeeze_chs, e1, e3)
            layers.append(block)
            chs = block.out_chs
        self.features = nn.Sequential(*layers)
        # A 1x1 convolution to class scores, then global pooling of the 4x4 map.
        self.classifier = nn.Sequential(
            ConvNormAct(chs, num_classes, 1, bias=True),
            nn.AvgPool2d(4),
            nn.Flatten(),
        )


@register_arch(
    family="squeezenet",
    description="SqueezeNet 1.0 adapted to CIFAR (3x3 stem, BatchNorm, no dropout)",
    paper=PAPER_SQUEEZENET,
)
def squeezenet(*, num_classes: int = 10, in_channels: int = 3) -> SqueezeNet:
    """SqueezeNet with plain Fire modules.

    Args:
        num_classes: size of the classifier output.
        in_channels: channels of the input image.
    """
    return SqueezeNet(Fire, num_classes=num_classes, in_channels=in_channels)


@register_arch(
    family="squeezenet",
    description="SqueezeNet with depthwise-separable 3x3 expand branches (SqueezeNet-DSC)",
    paper=PAPER_DSC,
)
def squeezenet_dsc(*, num_classes: int = 10, in_channels: int = 3) -> SqueezeNet:
    """SqueezeNet-DSC: every Fire replaced by FireDSC, a third of SqueezeNet's parameters.

    Args:
        num_classes: size of the classifier output.
        in_channels: channels of the input image.
    """
    return SqueezeNet(FireDSC, num_classes=num_classes, in_channels=in_channels)
