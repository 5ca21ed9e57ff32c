"""The plateau schedule and early stopping, driven by synthetic loss sequences."""

from __future__ import annotations

import pytest

from archbench.train.schedule import (
    PLATEAU_PRESETS,
    Action,
    EarlyStopConfig,
    EarlyStopping,
    PlateauConfig,
    PlateauSchedule,
)


def drive(schedule, losses):
    return [schedule.step(loss) for loss in losses]


def test_first_epoch_never_counts():
    schedule = PlateauSchedule(PlateauConfig(patience=1))
    assert schedule.step(5.0) is Action.CONTINUE
    assert schedule.plateau_epochs == 0


def test_drop_after_patience_flat_epochs_then_counter_resets():
    schedule = PlateauSchedule(PlateauConfig(patience=3))
    actions = drive(schedule, [2.0, 1.995, 1.99, 1.985])
    assert actions == [Action.CONTINUE] * 3 + [Action.DROP_LR]
    assert schedule.drops == 1 and schedule.plateau_epochs == 0
    # after the division the count starts again from zero
    assert drive(schedule, [1.984, 1.983]) == [Action.CONTINUE] * 2
    assert schedule.plateau_epochs == 2


def test_increase_counts_towards_plateau():
    schedule = PlateauSchedule(PlateauConfig(patience=2))
    assert drive(schedule, [1.0, 1.5, 2.0]) == [Action.CONTINUE, Action.CONTINUE, Action.DROP_LR]


def test_exact_threshold_improvement_resets_and_just_under_counts():
    # Binary fractions make the differences exact: 1.0 - 0.75 == 0.25 exactly.
    schedule = PlateauSchedule(PlateauConfig(threshold=0.25, patience=2))
    drive(schedule, [1.5, 1.375])  # improved by 0.125 < 0.25: counts
    assert schedule.plateau_epochs == 1
    schedule.step(1.125)  # improved by exactly 0.25: not a plateau epoch, resets
    assert schedule.plateau_epochs == 0
    schedule.step(0.875 + 2**-10)  # just under the threshold: counts
    assert schedule.plateau_epochs == 1


def test_good_epoch_between_flat_ones_resets_the_count():
    schedule = PlateauSchedule(PlateauConfig(patience=3))
    actions = drive(schedule, [3.0, 2.999, 2.998, 2.0, 1.999, 1.998])
    assert Action.DROP_LR not in actions
    assert schedule.plateau_epochs == 2


def test_fourth_drop_stops_training():
    schedule = PlateauSchedule(PlateauConfig(patience=1, max_drops=4))
    actions = drive(schedule, [1.0, 1.0, 1.0, 1.0, 1.0])
    assert actions == [Action.CONTINUE] + [Action.DROP_LR] * 3 + [Action.STOP]
    assert schedule.drops == 4


def test_reference_defaults_and_dissertation_preset():
    reference = PLATEAU_PRESETS["plateau"]
    assert (reference.threshold, reference.patience, reference.factor, reference.max_drops) == (
        0.01,
        10,
        10.0,
        4,
    )
    assert PLATEAU_PRESETS["plateau-dissertation"].patience == 1
    schedule = PlateauSchedule(reference)
    losses = [1.0] * 11  # first epoch + 10 flat epochs
    assert drive(schedule, losses)[-1] is Action.DROP_LR
    assert drive(schedule, losses[:9]) == [Action.CONTINUE] * 9


def test_state_round_trip_continues_identically():
    losses = [2.0, 1.99, 1.98, 1.5, 1.499, 1.498, 1.497, 1.496]
    whole = PlateauSchedule(PlateauConfig(patience=2))
    expected = drive(whole, losses)
    first = PlateauSchedule(PlateauConfig(patience=2))
    head = drive(first, losses[:4])
    resumed = PlateauSchedule()
    resumed.load_state_dict(first.state_dict())
    assert head + drive(resumed, losses[4:]) == expected
    assert resumed.state_dict() == whole.state_dict()


@pytest.mark.parametrize(
    "kwargs", [{"patience": 0}, {"factor": 1.0}, {"max_drops": 0}, {"threshold": -1}]
)
def test_invalid_plateau_config(kwargs):
    with pytest.raises(ValueError):
        PlateauConfig(**kwargs)


def test_early_stopping_on_validation_loss():
    stopper = EarlyStopping(EarlyStopConfig(patience=2))
    assert drive(stopper, [1.0, 0.8, 0.9, 0.85]) == [Action.CONTINUE] * 3 + [Action.STOP]
    assert stopper.best_loss == 0.8
    restored = EarlyStopping()
    restored.load_state_dict(EarlyStopping(EarlyStopConfig(patience=2)).state_dict())
    assert restored.config.patience == 2
