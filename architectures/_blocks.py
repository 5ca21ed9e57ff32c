"""Building blocks shared by the architecture families.

Blocks take arguments in one order (``in_chs, out_chs, kernel_size, stride``, then keyword
options) and their ``forward`` is a straight sequence, so a family file reads as a table of
blocks rather than a pile of layers.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class ConvNormAct(nn.Sequential):
    """Convolution, optional BatchNorm, optional ReLU: the unit every network here repeats."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            {
                "conv": nn.Conv2d(
                    in_chs,
                    out_chs,
                    kernel_size,
                    stride=stride,
                    padding=kernel_size // 2,
                    groups=groups,
                    bias=bias,
                )
            }
        )
        if norm:
            layers["bn"] = nn.BatchNorm2d(out_chs)
        if act:
            layers["act"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class DepthwiseSeparable(nn.Sequential):
    """A 3x3 depthwise convolution then a 1x1 pointwise convolution (MobileNet's block).

    ``depthwise_norm=False`` drops the BatchNorm after the depthwise convolution, which is how
    SqueezeNet-DSC's Fire branch is built (the study's parameter counts depend on it).
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int = 1, *, depthwise_norm: bool = True
    ) -> None:
        super().__init__(
            OrderedDict(
                depthwise=ConvNormAct(
                    in_chs, in_chs, 3, stride, groups=in_chs, norm=depthwise_norm
                ),
                pointwise=ConvNormAct(in_chs, out_chs, 1),
            )
        )


class FeaturesClassifier(nn.Module):
    """A network as ``features`` then ``classifier``, with timm's forward_features/forward_head.

    Subclasses build the two submodules; the split lets users take embeddings
    (``forward_features``) or swap the head without touching the rest.
    """

    features: nn.Module
    classifier: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
