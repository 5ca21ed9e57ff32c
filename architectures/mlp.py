"""Seed 002's multilayer perceptron for Fashion-MNIST, at its native 1x28x28 input.

Flatten 784 -> Dense 128 ReLU -> Dropout 0.2 -> Dense classes: (784 x 128 + 128) + (128 x 10 +
10) = 101,770 trainable parameters for 10 classes, as the seed counts them. It has no
convolution, so its input size is part of the network: fed 3x32x32 images it would be another
network (393,344 + 1,290 parameters), hence the registered ``input_size``.
"""

from __future__ import annotations

from torch import nn

from ._registry import register_arch

PAPER = "Freitas et al., Redes neuronais clássicas para classificação de mini-imagens (2025)"


class MLP(nn.Sequential):
    """Flatten, one ReLU hidden layer with dropout, one linear classifier."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: int = 128,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(in_channels * image_size * image_size, hidden)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)


@register_arch(
    family="mlp",
    description="Seed 002's Fashion-MNIST MLP: 784 -> 128 ReLU -> dropout 0.2 -> classes",
    paper=PAPER,
    input_size=(1, 28, 28),
)
def mlp(*, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> MLP:
    """The seed's MLP.

    Args:
        num_classes: size of the classifier output.
        in_channels: channels of the input image (1: grayscale, as the seed).
        image_size: height and width of the (square) input image.
    """
    return MLP(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
