"""Flag values several commands parse the same way: byte sizes such as ``10MB`` or ``2GiB``."""

from __future__ import annotations

import re

from ..errors import ArchbenchError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30})


def parse_size(text: str, flag: str) -> int:
    """``10MB``, ``512KB``, ``2GiB`` or plain bytes -> bytes (decimal and binary units)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS or float(match.group(1)) <= 0:
        raise ArchbenchError(f"{flag} takes a size such as 10MB, 512KB or 2GiB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
