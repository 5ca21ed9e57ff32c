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
from collections.abc import Callable
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


def _working_sets(threads: int, sizes: CacheSizes, max_bytes: int) -> list[tuple[str, int]]:
    """``(level, working set probed)``, smallest first: the L2s, doubling sizes, the LLC.

    Between and past the caches, working sets double up to ``max_bytes``: where threads span
    several last-level caches (several CCDs) or a victim cache keeps part of a buffer, a
    working set a few times the LLC still streams faster than DRAM, and a layer of that size
    (AlexNet's 64 MB classifier) must be charged at what it can get, or the floor is beaten.
    """
    l2_fit = min(int(sizes.l2_bytes * max(int(threads), 1) * FIT_SHARE), max_bytes)
    llc_fit = int(sizes.llc_bytes * FIT_SHARE)
    named = {l2_fit: "L2"}
    if l2_fit < llc_fit <= max_bytes:
        named[llc_fit] = "LLC"
    size = l2_fit * 2
    while size <= max_bytes:
        named.setdefault(size, f"{size / 2**20:g}MiB")
        size *= 2
    return [(named[size], size) for size in sorted(named)]


def probe_cache_levels(
    threads: int,
    repeats: int,
    sizes: CacheSizes | None = None,
    reader: Callable[[int], float] | None = None,
    max_bytes: int = MAX_PROBE_BYTES,
) -> list[dict[str, Any]]:
    """``[{"level", "bytes", "gbps", "probes", "source"}]``, fastest (smallest) level first.

    ``bytes`` is the largest working set charged at that level: :data:`FIT_SHARE` of the L2s
    (one core's L2 times ``threads``: each thread on its own core with its share of the data)
    or of the LLC, else the probed size itself, up to ``max_bytes``. ``reader``, when given, is
    one more probe: GB/s reading a working set of that many bytes (the fp32 peak passes ONNX
    Runtime's matrix-vector product). Each level's GB/s is never below the next larger one's.
    """
    sizes = sizes or cache_sizes()
    levels = []
    previous = torch.get_num_threads()
    for name, fits in _working_sets(threads, sizes, max_bytes):
        torch.set_num_threads(int(threads))
        try:
            probes = _bandwidth_gbps(fits, repeats)
        finally:
            torch.set_num_threads(previous)
        if name == "L2" and threads > 1:
            probes.update(_per_core_l2(fits // threads, threads, repeats))
        if reader is not None:
            probes["reader"] = reader(fits)
        levels.append(
            {
                "level": name,
                "bytes": fits,
                "gbps": max(probes.values()),
                "probes": probes,
                "source": sizes.source,
            }
        )
    for faster, slower in zip(levels[-2::-1], levels[::-1], strict=False):
        faster["gbps"] = max(faster["gbps"], slower["gbps"])
    return levels
