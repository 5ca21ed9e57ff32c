"""Training: the study's recipe, into a run directory that survives interruption.

- :mod:`.config`: :class:`TrainConfig`, every setting of a run, checked up front.
- :mod:`.schedule`: the plateau schedule and early stopping, as small state machines.
- :mod:`.trainer`: :class:`Trainer`, the epoch loop and its checkpoints.
- :mod:`.run`: :func:`train_run`, a new or resumed run from configuration to ``result.json``.
- :mod:`.class_weight`: `--class-weight` (balanced or a list) resolved to numbers.
- :mod:`.rundir`: the run directory's files, checkpoints and how to read them back.
- :mod:`.records`: ``train.log`` and ``metrics.csv``; :mod:`.signals`: a clean Ctrl-C.
- :mod:`.layout`: per-layer memory layout (depthwise convolutions in NCHW, a speed candidate).
- :mod:`.breakdown`: where a training step's time goes, by phase and operator (torch.profiler).
"""

from .config import (
    DEVICES,
    OPTIMIZER_IMPLS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    SELECT_ON,
    TrainConfig,
)
from .records import RunLog
from .run import EXIT_INTERRUPTED, RunOutcome, train_run
from .signals import StopRequest
from .trainer import Trainer

__all__ = [
    "DEVICES",
    "EXIT_INTERRUPTED",
    "OPTIMIZER_IMPLS",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "SELECT_ON",
    "RunLog",
    "RunOutcome",
    "StopRequest",
    "TrainConfig",
    "Trainer",
    "train_run",
]
