"""Training runs on the embedded digits set: run directories, determinism, resume, bad input."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from archbench.cli import main
from archbench.errors import ArchbenchError
from archbench.locks import DirectoryLock
from archbench.train import TrainConfig, train_run
from archbench.train import rundir as runs
from archbench.train.rundir import load_checkpoint
from tests.conftest import TINY_NET
from tests.run_files import read_metrics, snapshot

QUIET = Console(quiet=True)


def digits_config(tmp_path: Path, **overrides) -> TrainConfig:
    """The trainer's mechanics on the tiny CNN: the network is not what these tests are about
    (the study's networks train in the README's test below and in the shared digits run)."""
    values = dict(
        arch=TINY_NET,
        dataset="digits",
        data_dir=str(tmp_path / "data"),
        runs_dir=str(tmp_path / "runs"),
        max_epochs=2,
        threads=2,
    )
    return TrainConfig(**(values | overrides))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    outcome = train_run(digits_config(tmp, max_epochs=3), console=QUIET, quiet=True)
    assert outcome.status == "complete"
    return outcome.run_dir


def test_run_directory_holds_everything(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"config.json", "metrics.csv", "last.pt", "best.pt", "result.json", "train.log"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert finished_run.name.endswith("-build-digits")  # a user file's network: its function

    config = json.loads((finished_run / "config.json").read_text())
    assert config["train"]["max_epochs"] == 3 and config["train"]["augment"] == "crop"
    assert config["train"]["device"] == "cpu" and config["train"]["threads"] == 2
    assert config["data"]["num_classes"] == 10 and config["system"]["versions"]["torch"]

    rows = read_metrics(finished_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(float(r["train_loss"]) > 0 and 0 <= float(r["val_acc"]) <= 1 for r in rows)
    assert all(float(r["lr"]) == 0.01 for r in rows)

    result = json.loads((finished_run / "result.json").read_text())
    assert result["status"] == "complete"
    assert result["epochs_run"] == 3 and result["selected_on"] == "val_acc"
    best_row = rows[result["best_epoch"] - 1]
    assert float(best_row["val_acc"]) == max(float(r["val_acc"]) for r in rows)
    assert 0 < result["test_top1"] <= result["test_top5"] <= 1


def test_best_checkpoint_loads_safely_and_reproduces_test_accuracy(finished_run):
    from archbench.data import DataConfig, fit_images, load_data
    from tests.tiny_digits_net import build

    best = load_checkpoint(finished_run / "best.pt")
    assert best["arch"] == TINY_NET and best["num_classes"] == 10
    channels = len(best["mean"])  # digits' own one channel: the tiny net takes the data's
    model = build(num_classes=10, in_channels=channels)
    model.load_state_dict(best["model"])
    model.eval()
    config = json.loads((finished_run / "config.json").read_text())["train"]
    data = load_data(DataConfig(dataset="digits", data_dir=Path(config["data_dir"])))
    mean = torch.tensor(best["mean"]).view(1, channels, 1, 1)
    std = torch.tensor(best["std"]).view(1, channels, 1, 1)
    with torch.inference_mode():
        images = fit_images(data.test.images, (channels, 32, 32))  # as training fitted them
        logits = model((images.float() / 255 - mean) / std)
    top1 = (logits.argmax(1) == data.test.labels).float().mean().item()
    result = json.loads((finished_run / "result.json").read_text())
    # One batch here, the trainer's batches there: float32 sums in another order may flip a
    # near-tied argmax, one of 359 images.
    assert top1 == pytest.approx(result["test_top1"], abs=1.01 / 359)


def test_same_seed_same_metrics(tmp_path, finished_run):
    again = train_run(digits_config(tmp_path, max_epochs=3), console=QUIET, quiet=True)
    assert read_metrics(again.run_dir) == read_metrics(finished_run)
    other = train_run(digits_config(tmp_path, max_epochs=1, seed=1), console=QUIET, quiet=True)
    assert read_metrics(other.run_dir)[0] != read_metrics(finished_run)[0]


def test_interrupted_then_resumed_matches_uninterrupted(tmp_path, finished_run):
    def interrupt_after_first_epoch(row):
        if row["epoch"] == 1:
            signal.raise_signal(signal.SIGINT)  # the real handler, as Ctrl-C would

    outcome = train_run(
        digits_config(tmp_path, max_epochs=3),
        console=QUIET,
        quiet=True,
        on_epoch_end=interrupt_after_first_epoch,
    )
    assert outcome.status == "interrupted"
    result = json.loads((outcome.run_dir / "result.json").read_text())
    assert result["status"] == "interrupted" and result["epochs_run"] == 1
    assert len(read_metrics(outcome.run_dir)) == 1

    resumed = train_run(TrainConfig(), console=QUIET, quiet=True, resume=outcome.run_dir)
    assert resumed.status == "complete" and resumed.run_dir == outcome.run_dir
    assert read_metrics(outcome.run_dir) == read_metrics(finished_run)
    assert resumed.result["test_top1"] == pytest.approx(
        json.loads((finished_run / "result.json").read_text())["test_top1"]
    )
    assert "resuming" in (outcome.run_dir / "train.log").read_text()


@pytest.mark.slow
def test_ctrl_c_on_the_cli_exits_130_and_says_how_to_resume(tmp_path):
    runs_dir = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "archbench", "run", "--arch", TINY_NET, "--dataset", "digits",
         "--max-epochs", "50",
         "--runs-dir", str(runs_dir), "--data-dir", str(tmp_path / "data"), "--no-profile"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        metrics = list(runs_dir.glob("*/metrics.csv"))
        if metrics and len(metrics[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the run never finished an epoch")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "archbench run --resume" in out
    (run_dir,) = runs_dir.iterdir()
    assert json.loads((run_dir / "result.json").read_text())["status"] == "interrupted"
    load_checkpoint(run_dir / "last.pt")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--arch", "squeezenet-dsc"], "did you mean 'squeezenet_dsc'"),
        (["--dataset", "cifar-10"], "did you mean 'cifar10'"),
        (["--lr", "0"], "--lr must be positive"),
        (["--lr", "-0.1"], "--lr must be positive"),
        (["--batch-size", "0"], "--batch-size must be positive"),
        (["--max-epochs", "0"], "--max-epochs must be positive"),
        (["--val-fraction", "0"], "no validation split"),
        (["--dataset", "cifar100"], "cifar100"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys, flags, message):
    runs_dir = tmp_path / "runs"
    code = main(
        ["run", "--runs-dir", str(runs_dir), "--data-dir", str(tmp_path / "data"), "--quiet",
         "--no-profile", *flags]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_unwritable_runs_dir(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["run", "--runs-dir", str(blocker / "runs"), "--quiet", "--no-profile"])
    assert code == 2
    assert "is not writable" in capsys.readouterr().err


def test_resume_refuses_missing_complete_and_foreign_dirs(tmp_path, finished_run, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    cases = [
        (tmp_path / "missing", "does not exist"),
        (finished_run, "already complete"),
        (foreign, "not an archbench run directory"),
    ]
    for path, message in cases:
        before = snapshot(path) if path.exists() else None
        assert main(["run", "--resume", str(path), "--quiet"]) == 2
        assert message in capsys.readouterr().err
        if before is not None:
            assert snapshot(path) == before


def test_corrupt_or_mismatched_checkpoint_overwrites_nothing(tmp_path, capsys):
    outcome = train_run(
        digits_config(tmp_path, max_epochs=2),
        console=QUIET,
        quiet=True,
        on_epoch_end=lambda row: signal.raise_signal(signal.SIGINT),
    )
    run_dir = outcome.run_dir
    good = (run_dir / "last.pt").read_bytes()

    (run_dir / "last.pt").write_bytes(good[: len(good) // 2])
    before = snapshot(run_dir)
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert snapshot(run_dir) == before

    state = torch.load(io.BytesIO(good), weights_only=True)
    state["arch"] = "vgg19"
    torch.save(state, run_dir / "last.pt")
    before = snapshot(run_dir)
    with pytest.raises(ArchbenchError, match="arch='vgg19'"):
        train_run(TrainConfig(), console=QUIET, quiet=True, resume=run_dir)
    assert snapshot(run_dir) == before


def test_a_kill_after_the_stop_decision_resumes_to_complete_without_more_epochs(tmp_path):
    # Epoch 1 sets the reference loss; epoch 2 is a plateau (threshold 10) whose LR division is
    # the first and last one allowed, so training stops after it.
    stopping = dict(plateau_threshold=10.0, plateau_patience=1, plateau_max_drops=1)
    outcome = train_run(digits_config(tmp_path, max_epochs=5, **stopping), console=QUIET,
                        quiet=True)  # fmt: skip
    assert outcome.status == "complete" and outcome.result["epochs_run"] == 2
    metrics = read_metrics(outcome.run_dir)
    # Killed after last.pt and before result.json said complete: it still says running.
    result_path = outcome.run_dir / "result.json"
    result_path.write_text(json.dumps(outcome.result | {"status": "running"}))
    resumed = train_run(TrainConfig(), console=QUIET, quiet=True, resume=outcome.run_dir)
    assert resumed.status == "complete" and resumed.result["epochs_run"] == 2
    assert read_metrics(outcome.run_dir) == metrics
    assert resumed.result["test_top1"] == outcome.result["test_top1"]


def test_resume_removes_stale_temporaries_and_refuses_a_live_holder(tmp_path, capsys):
    outcome = train_run(digits_config(tmp_path, max_epochs=2), console=QUIET, quiet=True,
                        on_epoch_end=lambda row: signal.raise_signal(signal.SIGINT))  # fmt: skip
    run_dir = outcome.run_dir
    with DirectoryLock(run_dir, "training"):  # another trainer holds it (a second descriptor)
        before = snapshot(run_dir)
        assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by training (pid {os.getpid()}" in err and err.count("\n") == 1
        assert snapshot(run_dir) == before
    stale = run_dir / ".last.pt.k1ll3d.tmp"  # what a writer killed mid-write leaves
    stale.write_bytes(b"half a checkpoint")
    resumed = train_run(TrainConfig(), console=QUIET, quiet=True, resume=run_dir)
    assert resumed.status == "complete" and not stale.exists()


@pytest.mark.slow
def test_digits_default_reaches_90_percent(tmp_path):
    """The README's first command: the digits defaults must reach 90% top-1 on the test split."""
    config = TrainConfig(
        dataset="digits", data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs")
    )
    outcome = train_run(config, console=QUIET, quiet=True)
    assert outcome.status == "complete"
    assert outcome.result["test_top1"] >= 0.90, outcome.result
    assert os.path.getsize(outcome.run_dir / "best.pt") > 0


def test_bf16_trains_and_warns_only_where_the_cpu_emulates_it(tmp_path):
    """bf16 autocast trains for real; a CPU without native bf16 gets a warning in the log."""
    from archbench.measure.numerics import bf16_skip_reason

    tiny = dict(arch=TINY_NET, max_epochs=3)
    outcome = train_run(digits_config(tmp_path, precision="bf16", **tiny), quiet=True)
    assert outcome.status == "complete"
    assert outcome.result["test_top1"] > 0.2, outcome.result  # 10 classes: chance is 0.1
    log = (outcome.run_dir / runs.LOG).read_text()
    emulated = bf16_skip_reason() is not None
    assert ("--precision bf16 is likely slower than fp32 here" in log) == emulated, log
    fp32 = train_run(digits_config(tmp_path / "fp32", **tiny), quiet=True)
    assert "--precision bf16" not in (fp32.run_dir / runs.LOG).read_text()
