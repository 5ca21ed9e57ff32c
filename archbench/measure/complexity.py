"""Model complexity: trainable parameters and multiply-accumulates (MACs).

MACs are counted by fvcore, the counter the study's figures were checked against. fvcore calls a
fused multiply-add one "flop"; we report the same number under its honest name, MACs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .models import eval_copy, model_device


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int


@dataclass(frozen=True)
class LayerMacs:
    name: str
    kind: str
    macs: int


def count_parameters(model: nn.Module) -> ParameterCount:
    """Trainable and total parameters (the study counts trainable weights and biases)."""
    params = list(model.parameters())
    return ParameterCount(
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
    )


def _flop_analysis(model: nn.Module, input_shape: tuple[int, ...]):
    from fvcore.nn import FlopCountAnalysis

    with eval_copy(model) as target:
        analysis = FlopCountAnalysis(target, torch.zeros(input_shape, device=model_device(target)))
        # fvcore warns about every op it has no counter for (ReLU, pooling, add): no MACs.
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        analysis.total()  # run the trace once, inside the eval-mode window
    return analysis


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-accumulates of one forward pass on an input of ``input_shape`` (fvcore)."""
    return int(_flop_analysis(model, input_shape).total())


def macs_by_layer(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)
) -> list[LayerMacs]:
    """MACs of every leaf module, largest first (leaves with no MACs are left out)."""
    analysis = _flop_analysis(model, input_shape)
    per_module = analysis.by_module()
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    leaves = {name for name, module in model.named_modules() if not list(module.children())}
    rows = [
        LayerMacs(name=name, kind=kinds[name], macs=int(macs))
        for name, macs in per_module.items()
        if name in leaves and macs > 0
    ]
    return sorted(rows, key=lambda row: row.macs, reverse=True)
