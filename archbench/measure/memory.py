"""Training memory per batch size, and the largest training batch that fits a budget.

Seed 000 had to drop VGG16 to batch 16 where MobileNetV2 trained at 64: which batch fits is a
deployment figure of its own. One probe is two training steps (forward, cross-entropy, backward,
Adam step; the second step runs with the optimizer's state already allocated, which is the
steady-state peak) at a given batch of real training images:

* CUDA: in this process, ``torch.cuda.max_memory_allocated`` after resetting the peak, a new
  model per probe; an out-of-memory error is a probe that does not fit (and is backed off from);
* CPU: in a fresh interpreter (:mod:`memory_child`) its peak resident memory minus its peak once
  the imports and the dataset were loaded (running out of memory on a CPU kills the process, so
  the budget is compared with the measured peak instead).

:func:`find_largest_batch` doubles the batch until a probe does not fit, then narrows the
interval by interpolating the (near-linear) memory between its two ends and probing the guess
and its neighbour, bisecting when a round did not halve the interval; it is bounded in probes
and says whether its answer is exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from archbench.errors import ArchbenchError
from archbench.measure.coldstart import PACKAGE_ROOT, child_environment

MEMORY_CHILD = Path(__file__).with_name("memory_child.py")
DEFAULT_MAX_BATCH = 4096
DEFAULT_MAX_PROBES = 24
TRAINING_STEPS = 2
_USER_ERRORS = ("archbench.errors.ArchbenchError: ", "architectures._registry.ArchitectureError: ")
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """``"4GiB"``, ``"512MiB"``, ``"2G"``, ``"1000000"`` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ArchbenchError(f"--budget takes a size such as 4GiB or 512MiB, got {text!r}")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 1:
        raise ArchbenchError(f"--budget must be positive, got {text!r}")
    return int(value)


def format_bytes(value: int | None) -> str:
    if value is None:
        return "out of memory"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value} B"


@dataclass
class BatchSearch:
    """Every probe (batch -> bytes, ``None`` = out of memory) and what they establish."""

    budget_bytes: int
    probes: dict[int, int | None] = field(default_factory=dict)
    largest: int | None = None
    exact: bool = False

    def fits(self, batch: int) -> bool:
        measured = self.probes.get(batch)
        return measured is not None and measured <= self.budget_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_bytes": self.budget_bytes,
            "largest_batch": self.largest,
            "exact": self.exact,
            "bytes_at_largest": self.probes.get(self.largest) if self.largest else None,
            "probes": [
                {"batch": batch, "bytes": measured, "fits": self.fits(batch)}
                for batch, measured in sorted(self.probes.items())
            ],
        }


def _interpolate(search: BatchSearch, low: int, high: int) -> int:
    """Where the line through the two ends meets the budget, strictly inside (low, high)."""
    low_bytes, high_bytes = search.probes[low], search.probes[high]
    if high_bytes is None or low_bytes is None or high_bytes <= low_bytes:
        return (low + high) // 2  # out of memory at the top end: nothing to interpolate
    guess = low + int((search.budget_bytes - low_bytes) * (high - low) / (high_bytes - low_bytes))
    return min(max(guess, low + 1), high - 1)


def find_largest_batch(
    measure: Callable[[int], int | None],
    budget_bytes: int,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_probes: int = DEFAULT_MAX_PROBES,
    progress: Callable[[str], None] | None = None,
) -> BatchSearch:
    """The largest batch in ``[1, max_batch]`` whose ``measure(batch)`` is within the budget.

    Raises :class:`ArchbenchError` when batch 1 already does not fit.
    """
    say = progress or (lambda line: None)
    search = BatchSearch(budget_bytes)

    def probe(batch: int) -> bool:
        search.probes[batch] = measure(batch)
        say(f"batch {batch}: {format_bytes(search.probes[batch])}")
        return search.fits(batch)

    if not probe(1):
        raise ArchbenchError(
            f"even batch 1 needs {format_bytes(search.probes[1])} for training, over the "
            f"budget of {format_bytes(budget_bytes)}"
        )
    low, high = 1, None
    while high is None and low < max_batch and len(search.probes) < max_probes:
        batch = min(low * 2, max_batch)
        low, high = (batch, None) if probe(batch) else (low, batch)

    def room() -> bool:
        return high is not None and high - low > 1 and len(search.probes) < max_probes

    while room():
        width = high - low
        # Memory is close to linear in the batch: the interpolated guess and its neighbour
        # (one fits, the next does not) usually settle it; bisect when a round did not halve.
        guess = _interpolate(search, low, high)
        low, high = (guess, high) if probe(guess) else (low, guess)
        neighbour = guess + 1 if low == guess else guess - 1
        if room() and low < neighbour < high:
            low, high = (neighbour, high) if probe(neighbour) else (low, neighbour)
        if room() and (high - low) * 2 > width:
            middle = (low + high) // 2
            low, high = (middle, high) if probe(middle) else (low, middle)
    search.largest = low
    search.exact = (high is not None and high - low == 1) or low == max_batch
    return search


# ------------------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class MemoryConfig:
    """``archbench memory``: which network, which images, which budget, on which device."""

    arch: str
    dataset: str = "digits"
    data_dir: Path | None = None
    budget_bytes: int = 4 * 2**30
    device: str = "cpu"  # resolved: "cpu" or "cuda"
    max_batch: int = DEFAULT_MAX_BATCH
    max_probes: int = DEFAULT_MAX_PROBES
    threads: int | None = None
    num_classes: int | None = None  # None: the dataset's

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["data_dir"] = str(self.data_dir) if self.data_dir else None
        return data


def _child_payload(config: MemoryConfig, batch: int) -> dict[str, Any]:
    return {
        "arch": config.arch,
        "dataset": config.dataset,
        "data_dir": str(config.data_dir) if config.data_dir else None,
        "num_classes": config.num_classes,
        "batch": batch,
        "steps": TRAINING_STEPS,
        "threads": config.threads or torch.get_num_threads(),
    }


def _run_memory_child(payload: dict[str, Any]) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(MEMORY_CHILD), json.dumps(payload)],
        capture_output=True,
        text=True,
        env=child_environment(),
        cwd=Path.cwd(),
        timeout=1800,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if last.startswith(_USER_ERRORS):  # bad dataset or network: the user's one line
            raise ArchbenchError(last.split(": ", 1)[1])
        raise RuntimeError(f"training-memory subprocess exited {done.returncode}: {last}")
    return json.loads(lines[-1])


def _cuda_probe(config: MemoryConfig) -> Callable[[int], int | None]:
    """One in-process CUDA probe per batch: peak allocated bytes, ``None`` on out-of-memory."""
    from archbench.measure.memory_child import load_training_images, training_steps

    images, num_classes = load_training_images(config.dataset, config.data_dir)

    def measure(batch: int) -> int | None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        try:
            classes = config.num_classes or num_classes
            training_steps(config.arch, classes, images, batch, TRAINING_STEPS, "cuda")
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        except torch.cuda.OutOfMemoryError:
            return None
        finally:
            torch.cuda.empty_cache()

    return measure


def measure_training_memory(
    config: MemoryConfig, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The largest training batch within ``config.budget_bytes``: what ``memory.json`` holds."""
    say = progress or (lambda line: None)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    baselines: list[int] = []  # CPU: each probe's resident memory before its model
    if config.device == "cuda":
        if not torch.cuda.is_available():
            raise ArchbenchError("--device cuda: CUDA is not available here")
        measure = _cuda_probe(config)
        method = (
            "CUDA: torch.cuda.max_memory_allocated over two training steps (Adam) of a fresh "
            "model at each batch, peak reset before; out-of-memory = does not fit"
        )
    else:

        def measure(batch: int) -> int | None:
            probe = _run_memory_child(_child_payload(config, batch))
            baselines.append(probe["baseline_rss_bytes"])
            return probe["peak_rss_bytes"] - probe["baseline_rss_bytes"]

        method = (
            "CPU: a fresh interpreter per batch runs two training steps (forward, "
            "cross-entropy, backward, Adam step; channels_last, fp32) on real training "
            "images; its peak RSS (VmHWM) minus its peak once the imports and the dataset "
            "were loaded, before the model"
        )
    search = find_largest_batch(
        measure,
        config.budget_bytes,
        max_batch=config.max_batch,
        max_probes=config.max_probes,
        progress=say,
    )
    return {
        "arch": config.arch,
        "dataset": config.dataset,
        "device": config.device,
        **search.to_dict(),
        "baseline_rss_bytes": min(baselines, default=None),
        "training_steps": TRAINING_STEPS,
        "method": method,
        "config": config.to_dict(),
        "package_root": str(PACKAGE_ROOT),
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
