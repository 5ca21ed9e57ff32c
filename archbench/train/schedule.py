"""When to lower the learning rate and when to stop: the study's plateau rule, early stopping,
and a linear decay to zero over a fixed epoch budget.

The plateau rule and early stopping are small state machines fed one number per epoch; the
linear decay sets the learning rate before every optimizer step. All three can be unit-tested
without training and are saved in a checkpoint as a plain dict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum


class Action(str, Enum):
    """What the trainer should do after an epoch."""

    CONTINUE = "continue"
    DROP_LR = "drop_lr"
    STOP = "stop"


@dataclass(frozen=True)
class PlateauConfig:
    """The study's rule; defaults are the reference code's.

    An epoch counts towards a plateau when ``previous_loss - loss < threshold`` (so an increase
    counts too); after ``patience`` such epochs in a row the learning rate is divided by
    ``factor`` and the count restarts; training stops when division number ``max_drops`` happens.
    """

    threshold: float = 0.01
    patience: int = 10
    factor: float = 10.0
    max_drops: int = 4

    def __post_init__(self) -> None:
        if self.patience < 1 or self.max_drops < 1:
            raise ValueError("plateau patience and max_drops must be at least 1")
        if self.factor <= 1:
            raise ValueError("plateau factor must be greater than 1")
        if self.threshold < 0:
            raise ValueError("plateau threshold must not be negative")


PLATEAU_PRESETS = {
    "plateau": PlateauConfig(),  # the reference code
    "plateau-dissertation": PlateauConfig(patience=1),  # the dissertation's text
}


class PlateauSchedule:
    """Divide the LR by ``factor`` at each training-loss plateau; stop at the ``max_drops``-th."""

    def __init__(self, config: PlateauConfig = PlateauConfig()) -> None:
        self.config = config
        self.previous_loss: float | None = None
        self.plateau_epochs = 0
        self.drops = 0

    def step(self, train_loss: float) -> Action:
        previous, self.previous_loss = self.previous_loss, train_loss
        if previous is None:
            return Action.CONTINUE
        if previous - train_loss < self.config.threshold or math.isnan(train_loss):
            self.plateau_epochs += 1
        else:
            self.plateau_epochs = 0
        if self.plateau_epochs < self.config.patience:
            return Action.CONTINUE
        self.plateau_epochs = 0
        self.drops += 1
        return Action.STOP if self.drops >= self.config.max_drops else Action.DROP_LR

    def state_dict(self) -> dict:
        return {
            "kind": "plateau",
            "config": asdict(self.config),
            "previous_loss": self.previous_loss,
            "plateau_epochs": self.plateau_epochs,
            "drops": self.drops,
        }

    def load_state_dict(self, state: dict) -> None:
        self.config = PlateauConfig(**state["config"])
        self.previous_loss = state["previous_loss"]
        self.plateau_epochs = state["plateau_epochs"]
        self.drops = state["drops"]


@dataclass(frozen=True)
class EarlyStopConfig:
    """Stop when validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: int = 10
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError("early-stop patience must be at least 1")


class EarlyStopping:
    """Early stopping on validation loss; the trainer restores the best checkpoint at the end."""

    def __init__(self, config: EarlyStopConfig = EarlyStopConfig()) -> None:
        self.config = config
        self.best_loss = math.inf
        self.bad_epochs = 0
        self.drops = 0  # never lowers the LR; kept so both schedules report the same fields

    def step(self, val_loss: float) -> Action:
        if val_loss < self.best_loss - self.config.min_delta:
            self.best_loss = val_loss
            self.bad_epochs = 0
            return Action.CONTINUE
        self.bad_epochs += 1
        return Action.STOP if self.bad_epochs >= self.config.patience else Action.CONTINUE

    def state_dict(self) -> dict:
        return {
            "kind": "early-stop",
            "config": asdict(self.config),
            "best_loss": self.best_loss,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict) -> None:
        self.config = EarlyStopConfig(**state["config"])
        self.best_loss = state["best_loss"]
        self.bad_epochs = state["bad_epochs"]


class LinearDecay:
    """The learning rate falls linearly per optimizer step from ``base_lr`` to 0 over the budget.

    Under a fixed epoch budget this is the best simple schedule (Li, Yumer & Ramanan, "Budgeted
    Training", ICLR 2020). Step ``k`` of ``total_steps`` (counted from 0) trains at
    ``base_lr * (1 - k / total_steps)``: the first step at ``base_lr``, the last at
    ``base_lr / total_steps``. The rate is a function of the step alone, so a resumed run
    repeats an uninterrupted one; the checkpoint keeps ``total_steps`` so a resume with another
    budget (which would be another schedule) is refused.
    """

    def __init__(self, base_lr: float, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError("a linear decay needs at least one step")
        self.base_lr, self.total_steps = base_lr, total_steps
        self.drops = 0  # never drops the LR in steps; kept so all schedules report the same fields

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based), never below 0."""
        return self.base_lr * max(0.0, 1.0 - step / self.total_steps)

    def step(self, train_loss: float) -> Action:
        """Nothing happens at an epoch's end: the budget alone ends training."""
        return Action.CONTINUE

    def state_dict(self) -> dict:
        return {"kind": "linear", "base_lr": self.base_lr, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "linear":
            raise ValueError(f"the checkpoint's schedule is {state.get('kind')!r}, not linear")
        if state["total_steps"] != self.total_steps or state["base_lr"] != self.base_lr:
            raise ValueError(
                f"the checkpoint decays lr {state['base_lr']} over {state['total_steps']} steps, "
                f"this run {self.base_lr} over {self.total_steps}"
            )
