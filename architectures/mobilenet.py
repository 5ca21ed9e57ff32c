"""MobileNet v1 adapted to 32x32 inputs (Howard et al. 2017), as compared in Souza 2020."""

from __future__ import annotations

import torch
from torch import nn

from ._blocks import ConvNormAct, DepthwiseSeparable, FeaturesClassifier
from ._registry import register_arch

PAPER = "Howard et al., MobileNets, arXiv:1704.04861 (2017)"

# The 13 depthwise-separable blocks as (out_chs, stride); the stem gives 32 channels.
CIFAR_LAYOUT: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class MobileNet(FeaturesClassifier):
    """A 3x3 stem then a stack of depthwise-separable blocks, pooled into a linear classifier."""

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 3, layout=CIFAR_LAYOUT, stem_chs=32
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ConvNormAct(in_channels, stem_chs, 3)]
        chs = stem_chs
        for out_chs, stride in layout:
            if stride not in (1, 2):
                raise ValueError(f"MobileNet block stride must be 1 or 2, got {stride}")
            blocks.append(DepthwiseSeparable(chs, out_chs, stride))
            chs = out_chs
        self.features = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AvgPool2d(2), nn.Flatten())
        self.classifier = nn.Linear(chs, num_classes)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(x))


@register_arch(
    family="mobilenet",
    description="MobileNet v1 adapted to CIFAR (3x3/stride-1 stem, 2x2 final pooling)",
    paper=PAPER,
)
def mobilenet(*, num_classes: int = 10, in_channels: int = 3) -> MobileNet:
    """MobileNet v1 with width multiplier 1.

    Args:
        num_classes: size of the classifier output.
        in_channels: channels of the input image.
    """
    return MobileNet(num_classes=num_classes, in_channels=in_channels)
