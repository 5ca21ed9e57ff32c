"""Memory layout per layer: depthwise convolutions in NCHW inside a channels_last model.

channels_last speeds up dense convolutions on CPU, but oneDNN's depthwise kernels (and their
backward) need not gain from it alike; :func:`contiguous_depthwise` lets one measure the mix.
A convolution follows the layout of its input *or* its weight (either channels_last makes the
whole call channels_last), so both are switched: the weight once, the input per call by a
forward pre-hook, and the output back to channels_last by a forward hook for the next layer.
The arithmetic is the same; only the kernels and the summation order differ.
"""

from __future__ import annotations

import torch
from torch import nn


def is_depthwise(module: nn.Module) -> bool:
    """A 2-d convolution with one group per input channel (MobileNet's and SqueezeNet-DSC's)."""
    return (
        isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
    )


def _contiguous_input(_module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def _channels_last_output(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.contiguous(memory_format=torch.channels_last)


def contiguous_depthwise(model: nn.Module) -> int:
    """Run ``model``'s depthwise convolutions in contiguous (NCHW) layout; returns how many.

    Call it after the model's parameters have their final device and layout and before the
    optimizer is built (its state follows the weights' strides).
    """
    count = 0
    for module in model.modules():
        if not is_depthwise(module):
            continue
        # (C, 1, k, k) is both "contiguous" and "channels_last" by stride checks, so
        # .contiguous() would keep the channels_last strides: clone into NCHW strides.
        module.weight.data = module.weight.data.clone(memory_format=torch.contiguous_format)
        module.register_forward_pre_hook(_contiguous_input)
        module.register_forward_hook(_channels_last_output)
        count += 1
    return count
