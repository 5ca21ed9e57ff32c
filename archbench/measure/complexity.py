"""Model complexity: trainable parameters and multiply-accumulates (MACs).

MACs are counted by fvcore, the counter the study's figures were checked against. fvcore calls a
fused multiply-add one "flop"; we report the same number under its honest name, MACs, and state
the convention (:data:`MACS_CONVENTION`) wherever a count is shown. fvcore has no counter for
some operators (``aten::gelu``, attention's ``aten::scaled_dot_product_attention``...): those are
recorded by :func:`count_complexity` as ``unsupported_ops``, never dropped in silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .models import eval_copy, model_device


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int


MACS_CONVENTION = "1 MAC = one fused multiply-add = 2 FLOPs"
# Operators with no multiplication at all (comparisons, additions, eval-mode dropout): a MAC
# count misses nothing by leaving them out. Any other unsupported operator (gelu, hardswish,
# attention, average pooling...) is work the count does not include, and is shown as such.
NO_MULTIPLY_OPS = frozenset(
    {
        "aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d", "aten::adaptive_max_pool2d",
        "aten::add", "aten::sub", "aten::rsub", "aten::dropout", "aten::feature_dropout",
        "aten::max", "aten::min", "aten::maximum", "aten::minimum",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Complexity:
    """One forward pass's MACs, by operator, and the operators fvcore could not count."""

    macs: int
    by_operator: dict[str, int] = field(default_factory=dict)
    unsupported_ops: dict[str, int] = field(default_factory=dict)  # op name -> calls

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def uncounted_ops(self) -> dict[str, int]:
        """Unsupported operators that do multiply: the ones a reader must be told about."""
        return {
            op: count
            for op, count in self.unsupported_ops.items()
            if op.rstrip("_") not in NO_MULTIPLY_OPS
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "macs": self.macs,
            "flops": self.flops,
            "convention": MACS_CONVENTION,
            "by_operator": dict(self.by_operator),
            "unsupported_ops": dict(self.unsupported_ops),
            "uncounted_ops": self.uncounted_ops,
        }


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


def count_complexity(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> Complexity:
    """MACs with their per-operator split and fvcore's ``unsupported_ops()``, largest first."""
    analysis = _flop_analysis(model, input_shape)
    by_operator = sorted(analysis.by_operator().items(), key=lambda item: -item[1])
    unsupported = sorted(analysis.unsupported_ops().items(), key=lambda item: (-item[1], item[0]))
    return Complexity(
        macs=int(analysis.total()),
        by_operator={op: int(macs) for op, macs in by_operator if macs},
        unsupported_ops={op: int(count) for op, count in unsupported},
    )


def describe_uncounted(uncounted_ops: dict[str, int]) -> str:
    """``aten::gelu x6, aten::mul x9``: for footnotes and the ``list`` column."""
    return ", ".join(f"{op} x{count}" for op, count in uncounted_ops.items())


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
