"""The catalogue behind ``archbench list``: each network's size and cost at a glance."""

from __future__ import annotations

import pandas as pd

from architectures import arch_info, check_output, create_arch, is_user_reference, list_archs

from .complexity import count_complexity, count_parameters, describe_uncounted

COLUMNS = (
    "name",
    "family",
    "input_size",
    "params_c10",
    "params_c100",
    "macs_c10",
    "macs_miss",
    "description",
)


def arch_names(pattern: str = "*") -> list[str]:
    """Names matching ``pattern`` (registered, ``torchvision.models:*``, ``timm:*``), or the
    user reference itself (``FILE.py:FUNC``)."""
    if is_user_reference(pattern):
        arch_info(pattern)  # fails with a clear message if it cannot be loaded
        return [pattern]
    return list_archs(pattern)


def catalog(pattern: str = "*") -> pd.DataFrame:
    """One row per matching network: trainable params for 10 and 100 classes, MACs for one image
    at the network's own input size, and the operators those MACs leave out (``macs_miss``)."""
    rows = []
    for name in arch_names(pattern):
        info = arch_info(name)
        model_c10 = create_arch(name, num_classes=10, in_channels=info.input_size[0])
        check_output(model_c10, name, info.input_size, 10)
        complexity = count_complexity(model_c10, (1, *info.input_size))
        model_c100 = create_arch(name, num_classes=100, in_channels=info.input_size[0])
        rows.append(
            {
                "name": name,
                "family": info.family,
                "input_size": "x".join(str(v) for v in info.input_size),
                "params_c10": count_parameters(model_c10).trainable,
                "params_c100": count_parameters(model_c100).trainable,
                "macs_c10": complexity.macs,
                "macs_miss": describe_uncounted(complexity.uncounted_ops),
                "description": info.description,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))
