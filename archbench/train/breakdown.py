"""Where a training step's time goes: torch.profiler over real steps of the real loop.

:func:`profile_steps` runs :meth:`Trainer.train_one_epoch` itself (the loop ``archbench run``
uses) and profiles ``steps`` of its steps after ``warmup`` unprofiled ones. Each operator's
self CPU time is attributed to the phase label (:data:`~archbench.train.trainer.PHASES`) it
ran under: the trainer labels the batch it fetches (``data``), the forward pass and loss
(``forward``), ``loss.backward()`` (``backward``: on the CPU, autograd runs the backward
operators on the calling thread, inside that label), ``zero_grad`` and ``step`` (``optimizer``)
and the running loss and accuracy sums (``metrics``). Anything else is ``other``. A label's own
self time (Python between operators, autograd's bookkeeping outside any operator) is kept as
the row ``(outside operators)``, so the phases add up to the profiled CPU time.

The profiled window runs from one step's start to the start of the step ``steps`` later: it
holds ``steps`` training steps and ``steps`` batch fetches. Timings under the profiler are
somewhat slower than without it; the shares, not the absolute times, are the point.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from .. import files
from .signals import StopRequest
from .trainer import PHASES, Trainer

OTHER = "other"
OUTSIDE_OPERATORS = "(outside operators)"


@dataclass(frozen=True)
class OperatorTime:
    """One operator (at one set of input shapes) in one phase, per training step."""

    phase: str
    operator: str
    input_shapes: str
    calls: float  # per step
    self_cpu_ms: float  # per step
    share_of_step: float  # of the profiled CPU time of a step (0-1)


@dataclass(frozen=True)
class StepBreakdown:
    steps: int
    wall_ms: float  # per profiled step, profiler on
    operators: tuple[OperatorTime, ...]  # by self CPU time, largest first

    @property
    def cpu_ms(self) -> float:
        return sum(op.self_cpu_ms for op in self.operators)

    def phase_ms(self) -> dict[str, float]:
        """Self CPU ms per step of each phase, in :data:`PHASES` order (then ``other``)."""
        totals = {phase: 0.0 for phase in (*PHASES, OTHER)}
        for op in self.operators:
            totals[op.phase] += op.self_cpu_ms
        return totals

    def top(self, phase: str, count: int) -> list[OperatorTime]:
        return [op for op in self.operators if op.phase == phase][:count]


class _ProfiledWindow(StopRequest):
    """Starts the profiler at step ``warmup + 1``, stops it and the epoch ``steps`` later."""

    def __init__(self, profiler: profile, warmup: int, steps: int) -> None:
        super().__init__()
        self.profiler, self.warmup, self.steps = profiler, warmup, steps
        self.calls = 0
        self.started = self.stopped = None

    def __bool__(self) -> bool:
        self.calls += 1
        if self.calls == self.warmup + 1:
            self.profiler.start()
            self.started = time.perf_counter()
        if self.calls == self.warmup + self.steps + 1:
            self.stopped = time.perf_counter()
            self.profiler.stop()
        return self.stopped is not None


def profile_steps(trainer: Trainer, *, steps: int = 2, warmup: int = 3) -> StepBreakdown:
    """Profile ``steps`` training steps of ``trainer`` after ``warmup`` unprofiled ones.

    The trainer's weights and optimizer state move on, as in any training: use a throwaway one.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    profiler = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    window = _ProfiledWindow(profiler, warmup, steps)
    while window.stopped is None:  # a short epoch: go on into the next one
        trainer.train_one_epoch(window)
    operators = attribute(profiler.events(), steps)
    return StepBreakdown(steps, (window.stopped - window.started) * 1e3 / steps, operators)


def phase_of(event) -> str:
    """The innermost phase label around a profiler event (itself, if it is one)."""
    node = event
    while node is not None:
        if node.name in PHASES:
            return node.name
        node = node.cpu_parent
    return OTHER


def compact_shapes(shapes) -> str:
    """``[[128, 32, 16, 16], [], [32]]`` -> ``128x32x16x16, 32``: the tensor arguments' shapes
    (scalars and lists record as ``[]`` and are left out; ``aten::cat``'s inputs are a list)."""
    return ", ".join("x".join(str(d) for d in shape) for shape in shapes or () if shape)


def attribute(events: Iterable, steps: int) -> tuple[OperatorTime, ...]:
    """Sum self CPU time and calls per (phase, operator, input shapes), per step."""
    self_us: dict[tuple[str, str, str], float] = defaultdict(float)
    calls: dict[tuple[str, str, str], int] = defaultdict(int)
    for event in events:
        phase = phase_of(event)
        name = OUTSIDE_OPERATORS if event.name in PHASES else event.name
        shapes = "" if event.name in PHASES else compact_shapes(event.input_shapes)
        key = (phase, name, shapes)
        self_us[key] += event.self_cpu_time_total
        calls[key] += 1
    total_us = sum(self_us.values()) or 1.0
    rows = [
        OperatorTime(
            phase=phase,
            operator=name,
            input_shapes=shapes,
            calls=calls[(phase, name, shapes)] / steps,
            self_cpu_ms=us / 1e3 / steps,
            share_of_step=us / total_us,
        )
        for (phase, name, shapes), us in self_us.items()
    ]
    return tuple(sorted(rows, key=lambda op: op.self_cpu_ms, reverse=True))


CSV_COLUMNS = ("arch", "precision", "variant", *(f.name for f in fields(OperatorTime)))


def write_csv(path: Path, breakdowns: dict[tuple[str, str, str], StepBreakdown]) -> None:
    """One CSV of every operator row of every breakdown, keyed (arch, precision, variant: the
    settings it ran with), written atomically."""
    rows = [
        {"arch": arch, "precision": precision, "variant": variant, **asdict(op)}
        for (arch, precision, variant), breakdown in breakdowns.items()
        for op in breakdown.operators
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(Path(path), buffer.getvalue())
