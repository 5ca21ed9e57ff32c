"""``--schedule linear``: the learning rate per optimizer step, resume, the recorded protocol."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from archbench.cli import main
from archbench.data import load_data
from archbench.train import RunLog, StopRequest, TrainConfig, Trainer, train_run
from archbench.train import rundir as runs
from archbench.train.protocol import protocol_of, recorded_protocol
from archbench.train.schedule import LinearDecay
from tests.run_files import read_metrics, snapshot

QUIET = Console(quiet=True)
TINY = f"{Path(__file__).parent / 'tiny_digits_net.py'}:build"


def linear_config(tmp_path: Path, **overrides) -> TrainConfig:
    values = dict(
        arch=TINY,
        dataset="digits",
        data_dir=str(tmp_path / "data"),
        runs_dir=str(tmp_path / "runs"),
        schedule="linear",
        max_epochs=3,
        threads=1,
        lr=0.01,
    )
    return TrainConfig(**(values | overrides))


def test_linear_decay_rates_and_its_checkpoint_state():
    decay = LinearDecay(0.1, 4)
    assert [decay.lr_at(k) for k in range(5)] == pytest.approx([0.1, 0.075, 0.05, 0.025, 0.0])
    assert decay.lr_at(10) == 0.0  # never negative past the budget
    restored = LinearDecay(0.1, 4)
    restored.load_state_dict(decay.state_dict())
    with pytest.raises(ValueError, match="over 4 steps"):
        LinearDecay(0.1, 6).load_state_dict(decay.state_dict())
    with pytest.raises(ValueError, match="not linear"):
        decay.load_state_dict({"kind": "plateau"})


def test_every_optimizer_step_trains_at_the_linear_rate(tmp_path):
    config = linear_config(tmp_path, max_epochs=2).resolve_input_shape()
    data = load_data(config.data_config())
    config = config.resolved(data)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trainer = Trainer(config, data, run_dir, RunLog(run_dir / runs.LOG, QUIET, True), QUIET)
    seen: list[float] = []
    # The real optimizer reports the rate it steps with; nothing of the trainer is replaced.
    trainer.optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append(optimizer.param_groups[0]["lr"])
    )
    assert trainer.fit(StopRequest()) == "complete"
    per_epoch = len(trainer.train_loader)
    steps = 2 * per_epoch
    assert len(seen) == steps
    assert seen[0] == 0.01  # the first step at --lr
    assert seen[-1] == pytest.approx(0.01 / steps)  # the last one step short of 0
    assert all(a > b for a, b in zip(seen, seen[1:], strict=False))  # falling every step
    assert seen == pytest.approx([0.01 * (1 - k / steps) for k in range(steps)])
    assert [row["lr"] for row in trainer.history] == [seen[0], seen[per_epoch]]
    assert [row["lr_drops"] for row in trainer.history] == [0, 0]  # no plateau logic


def test_interrupted_linear_run_resumes_to_the_uninterrupted_epochs(tmp_path, capsys):
    whole = train_run(linear_config(tmp_path), console=QUIET, quiet=True)
    assert whole.status == "complete" and whole.result["epochs_run"] == 3  # every epoch runs

    def interrupt_after_first_epoch(row):
        if row["epoch"] == 1:
            signal.raise_signal(signal.SIGINT)  # the real handler, as Ctrl-C would

    cut = train_run(
        linear_config(tmp_path), console=QUIET, quiet=True, on_epoch_end=interrupt_after_first_epoch
    )
    assert cut.status == "interrupted"
    # Another budget is another schedule: refused in one line, nothing touched.
    before = snapshot(cut.run_dir)
    assert main(["run", "--resume", str(cut.run_dir), "--max-epochs", "5", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "--max-epochs 5 differs" in error and "budget defines its schedule" in error
    assert snapshot(cut.run_dir) == before

    resumed = train_run(
        TrainConfig(max_epochs=3), console=QUIET, quiet=True, resume=cut.run_dir
    )  # the same budget given again is fine
    assert resumed.status == "complete"
    assert read_metrics(cut.run_dir) == read_metrics(whole.run_dir)
    assert resumed.result["test_top1"] == whole.result["test_top1"]
    rates = [float(row["lr"]) for row in read_metrics(whole.run_dir)]
    assert rates[0] == 0.01 and rates == sorted(rates, reverse=True)
    last = runs.load_checkpoint(cut.run_dir / runs.LAST)
    assert last["schedule"]["kind"] == "linear"

    config = json.loads((whole.run_dir / runs.CONFIG).read_text())
    assert config["protocol"] == {
        "schedule": "linear",
        "max_epochs": 3,
        "budget_epochs": 3,
        "label": "budget 3 epochs, linear decay",
        "study": False,
    }


def test_plateau_flags_with_linear_and_the_help_text(tmp_path, capsys):
    args = ["run", "--arch", TINY, "--dataset", "digits", "--schedule", "linear",
            "--plateau-patience", "3", "--runs-dir", str(tmp_path / "runs"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    assert "--plateau-patience tune the plateau schedule" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "linear (a fixed budget: the LR falls per step from --lr to 0 over --max-epochs" in text


def test_protocol_labels_and_old_runs_read_as_plateau():
    assert protocol_of({"max_epochs": 200}).label == "study schedule (plateau, ≤ 200 epochs)"
    assert protocol_of({"max_epochs": 200}).study
    assert protocol_of({"schedule": "linear", "max_epochs": 15}).label == (
        "budget 15 epochs, linear decay"
    )
    assert not protocol_of({"max_epochs": 200, "plateau_patience": 3}).study
    # A config.json from before schedules and protocols were recorded: the plateau default.
    old = {"train": {"arch": "squeezenet", "max_epochs": 200}}
    assert recorded_protocol(old)["label"] == "study schedule (plateau, ≤ 200 epochs)"
    config = replace(TrainConfig(), schedule="linear", max_epochs=7)
    assert config.make_schedule(steps_per_epoch=10).total_steps == 70
