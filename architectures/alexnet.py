"""AlexNet adapted to 32x32 inputs (Krizhevsky et al. 2012), as compared in Souza 2020.

The first convolution became 3x3/stride 1 (from 11x11/stride 4), the second 3x3 (from 5x5), and
BatchNorm1d replaced the dropout of the two hidden fully connected layers.
"""

from __future__ import annotations

from torch import nn

from ._blocks import ConvNormAct, FeaturesClassifier
from ._registry import register_arch

PAPER = "Krizhevsky et al., ImageNet Classification with Deep CNNs, NeurIPS 2012"

# Convolutions as output channels; "pool" is a 3x3/stride-2 max pool (ceil mode).
CIFAR_LAYOUT: tuple[int | str, ...] = (64, "pool", 192, "pool", 384, 256, 256, "pool")


class AlexNet(FeaturesClassifier):
    """Five 3x3 convolutions with three pools, then three fully connected layers."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        layout=CIFAR_LAYOUT,
        hidden: int = 4096,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chs, size = in_channels, image_size
        for row in layout:
            if row == "pool":
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
                size = -(-(size - 3) // 2) + 1
            else:
                layers.append(ConvNormAct(chs, row, 3, bias=True, norm=False))
                chs = row
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(chs * size * size, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )


@register_arch(
    family="alexnet",
    description="AlexNet adapted to CIFAR (3x3 convolutions, BatchNorm instead of dropout)",
    paper=PAPER,
)
def alexnet(*, num_classes: int = 10, in_channels: int = 3) -> AlexNet:
    """AlexNet for 32x32 images.

    Args:
        num_classes: size of the classifier output.
        in_channels: channels of the input image.
    """
    return AlexNet(num_classes=num_classes, in_channels=in_channels)
