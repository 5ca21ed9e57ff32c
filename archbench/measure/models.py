"""How a measurement runs a model: in eval mode, on a chosen device, with a fixed thread count.

A measurement must leave the caller's model as it found it: its training flag is restored, a
model that lives on another device is copied rather than moved, and the thread count goes back
to what it was.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (the CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextlib.contextmanager
def eval_copy(model: nn.Module, device: str | torch.device | None = None) -> Iterator[nn.Module]:
    """``model`` in eval mode on ``device`` (default: where it already is).

    Yields the model itself when it is already on that kind of device (its training flag is
    restored afterwards), else a copy moved there, so the caller's model never moves.
    """
    parameter = next(model.parameters(), None)
    here = device is None or parameter is None or parameter.device.type == torch.device(device).type
    target = model if here else copy.deepcopy(model).to(device)
    was_training = model.training
    target.eval()
    try:
        yield target
    finally:
        model.train(was_training)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(threads)``, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
