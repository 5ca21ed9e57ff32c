"""A tiny digits net broken in training only (a bug in a user's network): it passes archbench's
eval-mode output check, so the run gets its directory, then raises in its first training step.
Self-contained: Ray workers load it by path, with no ``tests`` package on their ``sys.path``."""

from __future__ import annotations

from torch import nn

MESSAGE = "this network cannot train: its forward raises in training mode"


class FailsInTraining(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, num_classes),
        )

    def forward(self, images):
        if self.training:
            raise RuntimeError(MESSAGE)
        return self.net(images)


def build_broken(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return FailsInTraining(num_classes, in_channels)
