"""Where a network's classifier and last block are, for any network archbench can build.

archbench's own networks split into ``features`` and ``classifier`` (``FeaturesClassifier``);
timm's expose ``get_classifier``; torchvision's name the head ``fc`` or ``classifier``. Transfer
learning needs the same two answers from all of them, so they are found here by convention, not
by a table of network names.
"""

from __future__ import annotations

from torch import nn

from ...errors import ArchbenchError

CLASSIFIER_NAMES = ("classifier", "fc", "head", "heads", "last_linear")
# Top-level containers whose children are the network's stages (archbench/torchvision
# ``features``, timm ``stages``/``blocks``, some models' ``layers``).
STAGE_CONTAINERS = ("features", "stages", "blocks", "layers")


def find_classifier(model: nn.Module) -> tuple[str, nn.Module]:
    """The qualified name and module of the network's final classifier."""
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):  # timm
        classifier = get_classifier()
        for name, module in model.named_modules():
            if module is classifier and name:
                return name, module
    for name in CLASSIFIER_NAMES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return name, module
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    raise ArchbenchError(
        f"cannot find the classifier of {type(model).__name__}: no {'/'.join(CLASSIFIER_NAMES)} "
        "attribute, no get_classifier() and no nn.Linear"
    )


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Swap the submodule at dotted ``name`` (``classifier``, ``head.fc``) for ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network as an ordered list of blocks: top-level children, stage containers opened.

    Registration order is taken as execution order, which holds for every sequential CNN here.
    """
    result = []
    for name, child in model.named_children():
        if name in STAGE_CONTAINERS and isinstance(child, (nn.Sequential, nn.ModuleList)):
            result += [(f"{name}.{sub}", module) for sub, module in child.named_children()]
        else:
            result.append((name, child))
    return result


def last_block_onwards(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The last block holding a convolution, and everything after it (pooling, classifier).

    That is seed 004's "conv5" for DenseNet, ``layer4`` for a ResNet, the last Fire for
    SqueezeNet, the last depthwise-separable block for MobileNet.
    """
    classifier_name, _ = find_classifier(model)
    blocks = units(model)
    convolutional = [
        index
        for index, (name, module) in enumerate(blocks)
        if name != classifier_name
        and any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())
    ]
    if not convolutional:
        raise ArchbenchError(f"{type(model).__name__} has no convolutional block to unfreeze")
    return blocks[convolutional[-1] :]
