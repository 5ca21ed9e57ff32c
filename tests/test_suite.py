"""Suites on digits: finish, interrupt and rerun, retry a failing run, Ray, exclusive profiling."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from archbench.cli import main
from archbench.errors import ArchbenchError
from archbench.locks import read_holder
from archbench.measure import exclusive
from archbench.profile import ProfileConfig
from archbench.suite import SUITE_FILE, parse_set, plan, run_suite
from archbench.train import rundir as runs
from tests.conftest import TINY_NET, TINY_NET_WIDE

FAST = ["--samples", "20", "--warmup", "2", "--batch-sizes", "1", "--no-cold-start",
        "--backends", "cpu-eager,cpu-onnxruntime"]  # fmt: skip
FAST_PROFILE = ProfileConfig(backends=("cpu-eager", "cpu-onnxruntime"), samples=20, warmup=2,
                             batch_sizes=(1,), cold_start=False)  # fmt: skip


def two_tiny_networks(folder: Path) -> Path:
    """A suite file of two one-epoch digits runs: the suite, not the networks, is tested."""
    suite_file = folder / "two.toml"
    suite_file.write_text(
        f'archs = ["{TINY_NET}", "{TINY_NET_WIDE}"]\ndatasets = ["digits"]\n'
        f'[set]\nmax_epochs = 1\ndata_dir = "{folder / "data"}"\n'
    )
    return suite_file


def suite_command(suite_dir: Path, suite_file: Path) -> list[str]:
    return [sys.executable, "-m", "archbench", "suite", "--file", str(suite_file), "--quiet",
            "--runs-dir", str(suite_dir), *FAST]  # fmt: skip


def profile_window(run_dir: Path) -> tuple[datetime, datetime]:
    record = json.loads((run_dir / runs.PROFILE).read_text())["exclusive"]
    assert record["exclusive"] is True
    return (datetime.fromisoformat(record["held_from"]),
            datetime.fromisoformat(record["held_until"]))  # fmt: skip


def entry_status(suite_dir: Path, key: str) -> str | None:
    """The suite file's status of one entry; None before the file exists."""
    try:
        return json.loads((suite_dir / SUITE_FILE).read_text())["entries"][key]["status"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


@pytest.mark.slow
def test_interrupted_suite_resumes_without_redoing_complete_runs(tmp_path):
    suite_dir, suite_file = tmp_path / "suite", two_tiny_networks(tmp_path)
    # SIGINT as a terminal delivers it: a test run started in the background inherits it
    # ignored, and Python then installs no KeyboardInterrupt handler.
    process = subprocess.Popen(
        suite_command(suite_dir, suite_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    # Wait for the event (the first run complete), however long a loaded machine takes: a
    # signal sent at a deadline instead could land anywhere, or after the suite ended.
    while entry_status(suite_dir, "build-digits") != "complete":
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)  # while the second run starts
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    state = json.loads((suite_dir / SUITE_FILE).read_text())["entries"]
    first = state["build-digits"]
    assert first["status"] == "complete"
    assert state["build_wide-digits"]["status"] in ("queued", "interrupted")
    first_profile = (Path(first["run_dir"]) / runs.PROFILE).read_bytes()

    # The rerun in this process: resuming is what it tests, a second interpreter adds nothing.
    assert main(suite_command(suite_dir, suite_file)[3:]) == 0
    state = json.loads((suite_dir / SUITE_FILE).read_text())["entries"]
    assert {k: v["status"] for k, v in state.items()} == {
        "build-digits": "complete",
        "build_wide-digits": "complete",
    }
    # The complete run was not redone: same directory, same profile, no second run of it.
    assert state["build-digits"]["run_dir"] == first["run_dir"]
    assert (Path(first["run_dir"]) / runs.PROFILE).read_bytes() == first_profile
    assert len(list(suite_dir.glob("*-build-digits"))) == 1
    report = (suite_dir / "report.md").read_text()
    assert f"| {TINY_NET} " in report and f"| {TINY_NET_WIDE} " in report


@pytest.mark.slow
def test_a_second_suite_on_a_live_directory_is_refused_and_a_damaged_profile_explained(
    tmp_path, capsys
):
    """Two real `archbench suite` processes on one directory, then a truncated profile.json."""
    suite_dir, data_dir = tmp_path / "suite", tmp_path / "data"
    suite_file = tmp_path / "tiny.toml"  # the suite's mechanics, not a network, are tested here
    suite_file.write_text(f'archs = ["{TINY_NET}"]\ndatasets = ["digits"]\n[set]\nmax_epochs = 1\n')
    command = [sys.executable, "-m", "archbench", "suite", "--file", str(suite_file), "--quiet",
               "--runs-dir", str(suite_dir), "--data-dir", str(data_dir), *FAST]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and read_holder(suite_dir) is None:
        time.sleep(0.05)
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2
    assert f"in use by archbench suite (pid {first.pid} on" in second.stderr
    assert second.stderr.count("\n") == 1
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err

    state = json.loads((suite_dir / SUITE_FILE).read_text())["entries"]
    run_dir = Path(state["build-digits"]["run_dir"])
    profile = run_dir / runs.PROFILE
    profile.write_text(profile.read_text()[:100])  # a copy cut short
    argv = command[3:]  # the two reruns in this process: the lock is no longer in question
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{profile} is corrupt or truncated" in err
    assert "--reprofile" in err and "Traceback" not in err
    assert main([*argv, "--reprofile"]) == 0
    assert json.loads(profile.read_text())["arch"] == TINY_NET


def test_a_damaged_suite_file_is_one_line(tmp_path, capsys):
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / SUITE_FILE).write_text('{"name": "souza2020", "entr')
    code = main(["suite", "--preset", "souza2020", "--datasets", "digits", "--quiet",
                 "--runs-dir", str(tmp_path / "suite")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'suite' / SUITE_FILE} is corrupt or truncated" in err


def test_failing_run_is_retried_then_reported_with_its_reason(tmp_path):
    suite_file = tmp_path / "grid.toml"
    suite_file.write_text(
        f'archs = ["{TINY_NET}"]\ndatasets = ["digits"]\n'
        f'[set]\nmax_epochs = 1\ndata_dir = "{tmp_path / "data"}"\n'
        '[[runs]]\narch = "squeezenet"\ndataset = "digits"\nset = { lr = -1.0 }\n'
    )
    name, entries = plan(file=suite_file)
    outcome = run_suite(entries, tmp_path / "suite", name=name, retries=1,
                        profile_config=FAST_PROFILE, quiet=True)  # fmt: skip
    good, bad = outcome.entries["build-digits"], outcome.entries["squeezenet-digits"]
    assert good.status == "complete" and good.attempts == 1
    assert bad.status == "failed" and bad.attempts == 2
    assert "--lr must be positive" in bad.error
    assert outcome.exit_code == 1 and outcome.report is not None
    assert f"| {TINY_NET} " in outcome.report.read_text()


@pytest.mark.slow
def test_ray_backend_runs_the_same_suite_and_profiles_alone(tmp_path):
    ray = pytest.importorskip("ray")
    _, entries = plan(file=two_tiny_networks(tmp_path))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(ArchbenchError, match="--gpus-per-run 1 asks for more GPUs"):
            run_suite(entries, tmp_path / "suite", name="souza2020", backend="ray", gpus_per_run=1)
        outcome = run_suite(entries, tmp_path / "suite", name="souza2020", backend="ray",
                            profile_config=FAST_PROFILE, quiet=True)  # fmt: skip
    finally:
        ray.shutdown()
    for entry in outcome.entries.values():  # no GPU reserved: each task trained on the CPU
        assert runs.read_run(Path(entry.run_dir)).config["train"]["device"] == "cpu"
    assert {k: e.status for k, e in outcome.entries.items()} == {
        "build-digits": "complete",
        "build_wide-digits": "complete",
    }
    (a_start, a_end), (b_start, b_end) = (
        profile_window(Path(e.run_dir)) for e in outcome.entries.values()
    )
    assert a_end <= b_start or b_end <= a_start, "two profiles on one node overlapped"


def test_a_profile_waits_for_a_running_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv(exclusive.LOCK_DIR_ENV, str(tmp_path))
    released = threading.Event()
    holding = threading.Event()

    def epoch():
        with exclusive.computing():
            holding.set()
            time.sleep(0.5)
            released.set()

    worker = threading.Thread(target=epoch)
    worker.start()
    holding.wait(5)
    record: dict = {}
    with exclusive.measuring(record):
        assert released.is_set(), "the profile started while an epoch held the node"
    worker.join()
    assert record["waited_s"] >= 0.3 and record["held_until"] >= record["held_from"]


def test_set_overrides_are_typed_and_checked():
    assert parse_set(["max_epochs=5", "lr=1e-3", "augment=none", "channels-last=false"]) == {
        "max_epochs": 5,
        "lr": 0.001,
        "augment": "none",
        "channels_last": False,
    }
    assert parse_set(["lr=1"]) == {"lr": 1.0}
    for item, message in [
        ("max_epoch=5", "did you mean 'max_epochs'"),
        ("max_epochs=five", "takes a int"),
        ("compile=maybe", "true or false"),
        ("arch=vgg19", "decided by the suite"),
        ("lr", "key=value"),
    ]:
        with pytest.raises(ArchbenchError, match=message):
            parse_set([item])


def test_plans_from_presets_and_filters(tmp_path):
    name, entries = plan(preset="souza2020")
    assert name == "souza2020" and len(entries) == 10
    _, entries = plan(preset="souza2020", datasets="digits", archs="squeezenet*")
    assert [e.key for e in entries] == ["squeezenet_dsc-digits", "squeezenet-digits"]
    with pytest.raises(ArchbenchError, match="unknown preset"):
        plan(preset="smith99")
    with pytest.raises(ArchbenchError, match="empty"):
        plan(preset="souza2020", archs="resnet*")
    broken = tmp_path / "broken.toml"
    broken.write_text("archs = [\n")
    with pytest.raises(ArchbenchError, match="not valid"):
        plan(file=broken)


def test_seeds_expand_into_one_run_per_seed(tmp_path):
    plan_file = tmp_path / "grid.toml"
    plan_file.write_text(
        'archs = ["squeezenet"]\ndatasets = ["digits"]\nseeds = [0, 1]\n'
        '[[runs]]\narch = "vgg19"\nseeds = [3]\nset = { max_epochs = 2 }\n'
    )
    _, entries = plan(file=plan_file)
    assert [e.key for e in entries] == [
        "squeezenet-digits-s0", "squeezenet-digits-s1", "vgg19-digits-s3"]  # fmt: skip
    configs = [e.train_config(tmp_path) for e in entries]
    assert [c.seed for c in configs] == [0, 1, 3]
    assert configs[2].max_epochs == 2
    # --set seeds=... replaces the plan's seeds; runs without a dataset take the plan's.
    _, entries = plan(file=plan_file, datasets="cifar10", overrides=parse_set(["seeds=5,6"]))
    assert [e.key for e in entries] == [
        f"{arch}-cifar10-s{seed}" for arch in ("squeezenet", "vgg19") for seed in (5, 6)
    ]
    with pytest.raises(ArchbenchError, match="seeds"):
        parse_set(["seeds=0,x"])
