"""A run's training protocol: its schedule and epoch budget, as data and as one human label.

Runs compared in one table row must share a protocol: the study's plateau schedule runs each
network to its own natural stop, a linear decay gives every network the same budget. The label
is derived here and only here, so ``config.json``, ``profile.json`` and every report table say
the same words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import DEFAULT_MAX_EPOCHS, TrainConfig
from .schedule import PLATEAU_PRESETS, PlateauConfig

STUDY_SCHEDULE = "plateau"


@dataclass(frozen=True)
class Protocol:
    """How long and with which learning-rate schedule a run trained (``config.json``'s entry)."""

    schedule: str
    max_epochs: int | None  # the cap (plateau, early stop) or the budget (linear)
    budget_epochs: int | None  # the fixed budget of a linear decay; None for the others
    label: str  # "study schedule (plateau, ≤ 200 epochs)", "budget 15 epochs, linear decay"
    study: bool  # the study's own protocol: the reference plateau rule, up to 200 epochs

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def tag(self) -> str:
        """A short name for folder and plan-entry names: ``linear15``, ``study``, ``plateau``."""
        if self.schedule == "linear":
            return f"linear{self.budget_epochs}"
        if self.study:
            return "study"
        return f"{self.schedule}{self.max_epochs or ''}"


def protocol_of(train: dict) -> Protocol:
    """The protocol of a run from its ``config.json`` ``train`` settings.

    Runs from before schedules were recorded trained with the plateau schedule (the default).
    """
    config = TrainConfig.from_dict({"schedule": STUDY_SCHEDULE, **train})
    epochs = config.max_epochs
    if config.schedule == "linear":
        return Protocol("linear", epochs, epochs, f"budget {epochs} epochs, linear decay", False)
    cap = f"≤ {epochs} epochs" if epochs else "no epoch cap"
    if config.schedule == "early-stop":
        label = f"early stop (validation loss, patience {config.early_stop_patience}), {cap}"
        return Protocol(config.schedule, epochs, None, label, False)
    rule = config.make_schedule().config
    study = rule == PLATEAU_PRESETS[STUDY_SCHEDULE] and epochs == DEFAULT_MAX_EPOCHS
    return Protocol(config.schedule, epochs, None, _plateau_label(rule, cap), study)


def _plateau_label(rule: PlateauConfig, cap: str) -> str:
    if rule == PLATEAU_PRESETS[STUDY_SCHEDULE]:
        return f"study schedule (plateau, {cap})"
    if rule == PLATEAU_PRESETS["plateau-dissertation"]:
        return f"dissertation schedule (plateau, patience 1, {cap})"
    return (
        f"plateau (threshold {rule.threshold:g}, patience {rule.patience}, "
        f"LR ÷{rule.factor:g}, stop at drop {rule.max_drops}), {cap}"
    )


def recorded_protocol(config: dict) -> dict:
    """A run's protocol from its whole ``config.json``: the recorded entry, or (runs from before
    it was recorded) the one its training settings imply."""
    return config.get("protocol") or protocol_of(config["train"]).to_dict()
