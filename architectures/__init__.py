"""The archbench model registry: the study's networks and the blocks they are built from.

>>> from architectures import create_arch, list_archs
>>> list_archs("squeezenet*")
['squeezenet', 'squeezenet_dsc']
>>> model = create_arch("squeezenet_dsc", num_classes=100)
>>> model = create_arch("torchvision.models:resnet18", num_classes=10)
"""

from . import alexnet, mlp, mobilenet, squeezenet, vgg  # noqa: F401  (registers the networks)
from ._blocks import ConvNormAct, DepthwiseSeparable
from ._foreign import TIMM_PREFIX, TORCHVISION_PREFIX, is_foreign
from ._info import ArchInfo, ArchitectureError
from ._registry import (
    ENTRY_POINT_GROUP,
    arch_info,
    check_output,
    create_arch,
    is_user_reference,
    list_archs,
    load_user_builder,
    register_arch,
)
from .squeezenet import Fire, FireDSC

__all__ = [
    "ENTRY_POINT_GROUP",
    "TIMM_PREFIX",
    "TORCHVISION_PREFIX",
    "ArchInfo",
    "ArchitectureError",
    "ConvNormAct",
    "DepthwiseSeparable",
    "Fire",
    "FireDSC",
    "arch_info",
    "check_output",
    "create_arch",
    "is_foreign",
    "is_user_reference",
    "list_archs",
    "load_user_builder",
    "register_arch",
]
