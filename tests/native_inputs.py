"""Real 3x32x32 test images cut to a network's registered input size, for registry-wide tests.

Until every dataset can be loaded at a network's native size, a test that feeds every registered
network takes the first channels and the central crop of real images: still real pixels, in the
shape the network was built for (seed 002's MLP: 1x28x28).
"""

from __future__ import annotations

import torch


def to_input_size(images: torch.Tensor, input_size: tuple[int, int, int]) -> torch.Tensor:
    """``(N, 3, 32, 32)`` -> ``(N, *input_size)``: first channels, central crop."""
    channels, height, width = input_size
    if channels > images.shape[1] or height > images.shape[2] or width > images.shape[3]:
        raise ValueError(f"cannot cut {tuple(images.shape[1:])} images to {input_size}")
    top = (images.shape[2] - height) // 2
    left = (images.shape[3] - width) // 2
    return images[:, :channels, top : top + height, left : left + width].contiguous()
