"""A tiny CNN for end-to-end CLI tests, loaded the way users load theirs (``FILE.py:build``).

Two small convolutions and a linear head: it learns the embedded digits in a few epochs on a
busy 2-core machine, where the study's networks need minutes per epoch, and it has a last
convolution for Grad-CAM.
"""

from __future__ import annotations

from torch import nn


def build(num_classes: int = 10, in_channels: int = 3, width: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * width, num_classes),
    )


def build_wide(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A second network, for suites that need two entries (keys ``build-*``, ``build_wide-*``)."""
    return build(num_classes, in_channels, width=12)
