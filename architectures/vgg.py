"""VGG adapted to 32x32 inputs (Simonyan and Zisserman 2014), as compared in Souza 2020."""

from __future__ import annotations

from torch import nn

from ._blocks import ConvNormAct, FeaturesClassifier
from ._registry import register_arch

PAPER = "Simonyan and Zisserman, Very Deep Convolutional Networks, arXiv:1409.1556 (2014)"

# Convolutions as output channels; "pool" is a 2x2/stride-2 max pool.
VGG19_LAYOUT: tuple[int | str, ...] = (
    64, 64, "pool",
    128, 128, "pool",
    256, 256, 256, 256, "pool",
    512, 512, 512, 512, "pool",
    512, 512, 512, 512, "pool",
)  # fmt: skip


class VGG(FeaturesClassifier):
    """3x3 conv-BN-ReLU stacks separated by max pools, then one linear classifier."""

    def __init__(self, layout, *, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chs = in_channels
        for row in layout:
            if row == "pool":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(ConvNormAct(chs, row, 3, bias=True))
                chs = row
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(chs, num_classes))


@register_arch(
    family="vgg",
    description="VGG19 with BatchNorm adapted to CIFAR (a single 512->C linear classifier)",
    paper=PAPER,
)
def vgg19(*, num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG19-BN for 32x32 images.

    Args:
        num_classes: size of the classifier output.
        in_channels: channels of the input image.
    """
    return VGG(VGG19_LAYOUT, num_classes=num_classes, in_channels=in_channels)
