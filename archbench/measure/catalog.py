"""The catalogue behind ``archbench list``: each network's size and cost at a glance."""

from __future__ import annotations

import pandas as pd

from architectures import arch_info, create_arch, is_user_reference, list_archs

from .complexity import count_macs, count_parameters

COLUMNS = ("name", "family", "params_c10", "params_c100", "macs_c10", "description")


def arch_names(pattern: str = "*") -> list[str]:
    """Registered names matching ``pattern``, or the user reference itself (``FILE.py:FUNC``)."""
    if is_user_reference(pattern):
        arch_info(pattern)  # fails with a clear message if it cannot be loaded
        return [pattern]
    return list_archs(pattern)


def catalog(pattern: str = "*") -> pd.DataFrame:
    """One row per matching network: trainable params for 10 and 100 classes, MACs for one image."""
    rows = []
    for name in arch_names(pattern):
        info = arch_info(name)
        model_c10 = create_arch(name, num_classes=10)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "params_c10": count_parameters(model_c10).trainable,
                "params_c100": count_parameters(create_arch(name, num_classes=100)).trainable,
                "macs_c10": count_macs(model_c10, (1, *info.input_size)),
                "description": info.description,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))
