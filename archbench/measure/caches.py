"""The CPU's cache sizes and the bandwidth a working set that fits each level gets.

A batch-1 network at 32x32 keeps its activations in cache: charging them at the bandwidth of a
256 MiB copy (DRAM) makes a "floor" that a measurement can beat. :func:`probe_cache_levels`
measures a working set that fits the L2 caches of the threads in use and one that fits the
last-level cache, so a layer can be charged at the fastest level its working set fits.

Sizes come from ``/sys/devices/system/cpu/cpu0/cache`` (Linux); where it cannot be read, the
fallback (:data:`FALLBACK_L2_BYTES`, :data:`FALLBACK_LLC_BYTES`) is small on purpose: a level
assumed smaller than it is only charges a few layers at a slower level, so the floor stays a
floor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
FALLBACK_L2_BYTES = 512 * 2**10
FALLBACK_LLC_BYTES = 4 * 2**20
# A working set "fits" a level when it takes at most this share of it (code, stacks and the
# other thread's data share the cache too).
FIT_SHARE = 0.5
# A larger "last-level cache" (some VMs report hundreds of MiB) is probed at this size only.
MAX_PROBE_BYTES = 128 * 2**20
_TARGET_BYTES_PER_TIMING = 64 * 2**20  # each timed call repeats the probe to move about this


@dataclass(frozen=True)
class CacheSizes:
    l2_bytes: int  # per core
    llc_bytes: int  # the last level (shared)
    source: str  # "sysfs" or "fallback"


def _size_bytes(text: str) -> int:
    text = text.strip().upper()
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def cache_sizes(root: Path = SYSFS_CACHE) -> CacheSizes:
    """The L2 (per core) and last-level cache sizes, from sysfs or the fallback."""
    levels: dict[int, int] = {}
    try:
        for index in sorted(root.glob("index*")):
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            levels[level] = _size_bytes((index / "size").read_text())
    except (OSError, ValueError):
        levels = {}
    if 2 not in levels:
        return CacheSizes(FALLBACK_L2_BYTES, FALLBACK_LLC_BYTES, "fallback")
    last = max(levels)
    return CacheSizes(levels[2], levels[last] if last > 2 else levels[2], "sysfs")


def _bandwidth_gbps(working_set: int, repeats: int) -> dict[str, float]:
    """Best GB/s of a copy (read + write) and of a sum (read) over ``working_set`` bytes."""
    src = torch.ones(max(working_set // 8, 1))  # copy: source + destination = working set
    dst = torch.empty_like(src)
    data = torch.ones(max(working_set // 4, 1))  # sum: reads the whole working set
    figures = {}
    for name, fn, moved in (
        ("copy", lambda: dst.copy_(src), 2 * src.numel() * 4),
        ("sum", lambda: data.sum(), data.numel() * 4),
    ):
        inner = max(1, min(1000, _TARGET_BYTES_PER_TIMING // moved))
        fn()
        best = float("inf")
        with torch.inference_mode():
            for _ in range(repeats):
                start = time.perf_counter_ns()
                for _ in range(inner):
                    fn()
                best = min(best, (time.perf_counter_ns() - start) / 1e9 / inner)
        figures[name] = moved / max(best, 1e-12) / 1e9
    return figures


def _per_core_l2(per_core: int, threads: int, repeats: int) -> dict[str, float]:
    """One core's L2 bandwidth times ``threads``: each core has its own L2, so it scales.

    A multi-threaded probe of a small buffer mostly times the thread pool's wake-up (on a busy
    machine, a scheduler time slice): this figure is the one a floor can rely on.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            f"{name}_1core_x{threads}": gbps * threads
            for name, gbps in _bandwidth_gbps(per_core, repeats).items()
        }
    finally:
        torch.set_num_threads(previous)


def probe_cache_levels(
    threads: int, repeats: int, sizes: CacheSizes | None = None
) -> list[dict[str, Any]]:
    """``[{"level", "bytes", "gbps", "probes", "source"}]``, fastest level first.

    ``bytes`` is the largest working set charged at that level (:data:`FIT_SHARE` of its
    capacity); the L2 capacity is one core's L2 times ``threads`` (each thread on its own core,
    each with its share of the data). Each level's GB/s is never below the next slower one's.
    """
    sizes = sizes or cache_sizes()
    capacities = [("L2", sizes.l2_bytes * max(int(threads), 1))]
    if sizes.llc_bytes > capacities[0][1]:
        capacities.append(("LLC", sizes.llc_bytes))
    levels = []
    for name, capacity in capacities:
        fits = min(int(capacity * FIT_SHARE), MAX_PROBE_BYTES)
        probes = _bandwidth_gbps(fits, repeats)
        if name == "L2" and threads > 1:
            probes.update(_per_core_l2(fits // threads, threads, repeats))
        levels.append(
            {
                "level": name,
                "capacity_bytes": capacity,
                "bytes": fits,
                "gbps": max(probes.values()),
                "probes": probes,
                "source": sizes.source,
            }
        )
    for faster, slower in zip(levels[-2::-1], levels[::-1], strict=False):
        faster["gbps"] = max(faster["gbps"], slower["gbps"])
    return levels
