"""Layout and precision per layer for the depthwise convolutions of a training model.

channels_last speeds up dense convolutions on CPU, but oneDNN's depthwise kernels (and their
backward) need not gain from it alike; :func:`contiguous_depthwise` lets one measure the mix.
A convolution follows the layout of its input *or* its weight (either channels_last makes the
whole call channels_last), so both are switched: the weight once, the input per call by a
forward pre-hook, and the output back to channels_last by a forward hook for the next layer.
The arithmetic is the same; only the kernels and the summation order differ.

Under bf16 autocast, a depthwise convolution's backward in bf16 is oneDNN's slowest kernel on
CPU (MobileNet's stride-2 depthwise layers took 40% of a bf16 step, which ran slower than
fp32). :func:`fp32_depthwise` keeps them out of autocast, in fp32: 9 multiply-adds per output
are memory-bound either way, and fp32 is the more precise of the two.
"""

from __future__ import annotations

import torch
from torch import nn


def is_depthwise(module: nn.Module) -> bool:
    """A 2-d convolution with one group per input channel (MobileNet's and SqueezeNet-DSC's)."""
    return (
        isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
    )


class Fp32DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` that runs in fp32 outside autocast (same parameters)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        with torch.autocast(input.device.type, enabled=False):
            return super().forward(input.float())


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


def fp32_depthwise(model: nn.Module) -> int:
    """Run ``model``'s depthwise convolutions in fp32 under autocast; returns how many.

    Each plain ``nn.Conv2d`` becomes an :class:`Fp32DepthwiseConv2d` in place: the same module,
    parameters and state-dict keys, so checkpoints and the optimizer are unaffected. A
    subclass of ``nn.Conv2d`` (its own forward) is left alone.
    """
    count = 0
    for module in model.modules():
        if is_depthwise(module) and type(module) is nn.Conv2d:
            module.__class__ = Fp32DepthwiseConv2d
            count += 1
    return count
