"""The archbench model registry: the study's networks and the blocks they are built from.

>>> from architectures import create_arch, list_archs
>>> list_archs("squeezenet*")
['squeezenet', 'squeezenet_dsc']
>>> model = create_arch("squeezenet_dsc", num_classes=100)
"""

from . import alexnet, mlp, mobilenet, squeezenet, vgg  # noqa: F401  (registers the networks)
from ._blocks import ConvNormAct, DepthwiseSeparable
from ._registry import (
    ENTRY_POINT_GROUP,
    ArchInfo,
    ArchitectureError,
    arch_info,
    create_arch,
    is_user_reference,
    list_archs,
    load_user_builder,
    register_arch,
)
from .squeezenet import Fire, FireDSC

__all__ = [
    "ENTRY_POINT_GROUP",
    "ArchInfo",
    "ArchitectureError",
    "ConvNormAct",
    "DepthwiseSeparable",
    "Fire",
    "FireDSC",
    "arch_info",
    "create_arch",
    "is_user_reference",
    "list_archs",
    "load_user_builder",
    "register_arch",
]
