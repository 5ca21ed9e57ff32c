"""``--finetune head|last-block|all``: which parts of a pretrained network keep learning.

A frozen part gets no gradient *and* stays in eval mode while the rest trains, so its BatchNorm
statistics do not drift: the features a frozen backbone gives during training are exactly those
it gives at evaluation, which is what makes a feature cache valid.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ...errors import ArchbenchError
from .anatomy import find_classifier, last_block_onwards, units

FINETUNE_MODES = ("head", "last-block", "all")


@dataclass(frozen=True)
class FinetuneReport:
    """What a fine-tuning mode left trainable; recorded in ``config.json``."""

    mode: str
    trainable: tuple[str, ...]  # the module names that learn
    trainable_params: int
    frozen_params: int


def apply_finetune(model: nn.Module, mode: str) -> FinetuneReport:
    """Freeze every part of ``model`` that ``mode`` does not train (in place)."""
    if mode not in FINETUNE_MODES:
        raise ArchbenchError(f"--finetune {mode!r} is not one of {', '.join(FINETUNE_MODES)}")
    if mode == "all":
        learning = [("", model)]
    elif mode == "head":
        learning = [find_classifier(model)]
    else:
        learning = last_block_onwards(model)
    learning_ids = {id(module) for _, module in learning}
    if mode != "all":
        for _, module in _frozen_parts(model, learning_ids):
            freeze(module)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return FinetuneReport(
        mode=mode,
        trainable=tuple(name or "(all)" for name, _ in learning),
        trainable_params=trainable,
        frozen_params=frozen,
    )


def freeze(module: nn.Module) -> None:
    """No gradients, and eval mode even when an enclosing ``model.train()`` is called."""
    module.requires_grad_(False)
    module.eval()
    module.register_forward_pre_hook(_stay_in_eval)


def _stay_in_eval(module: nn.Module, args) -> None:
    # ``model.train()`` recurses into every child; undo it for a frozen part before it runs.
    if module.training:
        module.train(False)


def _frozen_parts(model: nn.Module, learning_ids: set[int]) -> list[tuple[str, nn.Module]]:
    """The blocks that do not learn: every unit outside the learning set, opened as needed."""
    parts = []
    for name, module in units(model):
        if id(module) in learning_ids:
            continue
        if _holds(module, learning_ids):  # a container of the learning part: freeze its siblings
            for child_name, child in module.named_children():
                if not _holds(child, learning_ids):
                    parts.append((f"{name}.{child_name}", child))
            continue
        parts.append((name, module))
    return parts


def _holds(module: nn.Module, ids: set[int]) -> bool:
    return any(id(inner) in ids for inner in module.modules())
