"""Results that live in the repository: a plan's runs copied in, skipped once committed, and
reported with their protocol and the pending rest (reports/cifar10's machinery, on digits)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from rich.console import Console

from archbench.cli import main
from archbench.report import collect_runs, run_table
from archbench.report.aggregate import aggregate_seeds
from archbench.suite.committed import COMMITTED_FILES, copy_in, park, restore
from archbench.train import TrainConfig, train_run
from archbench.train import rundir as runs

QUIET = Console(quiet=True)
TINY = f"{Path(__file__).parent / 'tiny_digits_net.py'}:build"
FAST = ["--samples", "20", "--warmup", "2", "--batch-sizes", "1", "--no-cold-start",
        "--backends", "cpu-eager"]  # fmt: skip
PLAN = f"""
archs = []
datasets = ["digits"]

[[runs]]
arch = "{TINY}"
tag = "budget"
seeds = [0]
set = {{ schedule = "linear", max_epochs = 2, threads = 1 }}

[[runs]]
arch = "{TINY}"
tag = "study"
seeds = [0]
set = {{ max_epochs = 2, threads = 1 }}
"""
LINEAR_ENTRY = "build-digits-linear2-s0"


@pytest.fixture(scope="module")
def plan_run(tmp_path_factory):
    """The plan's linear entry trained, profiled and copied in; the work dir kept aside."""
    root = tmp_path_factory.mktemp("plan")
    (root / "plan.toml").write_text(PLAN)
    args = plan_args(root, "--only", LINEAR_ENTRY)
    assert main(args) == 0
    return root


def plan_args(root: Path, *extra: str) -> list[str]:
    return ["suite", "--file", str(root / "plan.toml"), "--runs-dir", str(root / "work"),
            "--data-dir", str(root / "data"), "--results-dir", str(root / "results"),
            "--report", str(root / "report" / "plan.md"), "--quiet", *FAST, *extra]  # fmt: skip


def test_a_completed_run_is_copied_in_with_exactly_the_listed_files(plan_run):
    committed = sorted((plan_run / "results").iterdir())
    assert len(committed) == 1
    # The tiny network is not one of the three whose best.pt is kept.
    assert {p.name for p in committed[0].iterdir()} == set(COMMITTED_FILES)
    config = json.loads((committed[0] / runs.CONFIG).read_text())
    profile = json.loads((committed[0] / runs.PROFILE).read_text())
    assert config["protocol"]["label"] == "budget 2 epochs, linear decay"
    assert profile["protocol"] == config["protocol"]
    assert config["group"] == "build-digits-budget-2-epochs-linear-decay"
    assert (committed[0] / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_names_protocols_and_lists_pending_entries(plan_run):
    text = (plan_run / "report" / "plan.md").read_text()
    assert "the plan has 1 of 2 runs committed; 1 remain" in text
    main_table = text.split("## Relative")[0]
    # table rows only: a dirty checkout's header names changed files, tiny_digits_net.py too
    [row] = [row for row in main_table.splitlines() if row.startswith("| /") and "tiny" in row]
    assert "budget 2 epochs, linear decay" in row
    pending = text.split("## Pending")[1]
    assert "build-digits-plateau2-s0" in pending and "pending" in pending
    assert "study schedule (plateau, ≤ 2 epochs)" in pending
    assert LINEAR_ENTRY not in pending


def test_rerunning_the_plan_skips_committed_runs(plan_run, capsys):
    shutil.rmtree(plan_run / "work")  # a new day's machine: nothing left outside git
    before = sorted(p.name for p in (plan_run / "results").iterdir())
    assert main(plan_args(plan_run, "--only", LINEAR_ENTRY)) == 0
    assert not (plan_run / "work").exists()  # nothing trained
    assert sorted(p.name for p in (plan_run / "results").iterdir()) == before
    assert main(plan_args(plan_run, "--only", "nothing-like-this")) == 2
    assert "names no plan entry" in capsys.readouterr().err


def test_copy_in_keeps_a_model_only_best_pt_that_profile_and_weights_load(tmp_path):
    outcome = train_run(
        TrainConfig(arch=TINY, dataset="digits", data_dir=str(tmp_path / "data"),
                    runs_dir=str(tmp_path / "runs"), schedule="linear", max_epochs=1, threads=1),
        console=QUIET, quiet=True,
    )  # fmt: skip
    assert main(["profile", str(outcome.run_dir), "--quiet", *FAST]) == 0
    target = copy_in(outcome.run_dir, tmp_path / "results", weights_for=(TINY,))
    assert {p.name for p in target.iterdir()} == {*COMMITTED_FILES, runs.BEST}
    best = torch.load(target / runs.BEST, weights_only=True)
    assert "model" in best and not {"optimizer", "schedule", "rng", "history"} & set(best)
    # Re-profiled where it is committed, and used as the starting weights of a new run.
    assert main(["profile", str(target), "--quiet", *FAST]) == 0
    tuned = train_run(
        TrainConfig(arch=TINY, dataset="digits", data_dir=str(tmp_path / "data"),
                    runs_dir=str(tmp_path / "runs"), weights=str(target), max_epochs=1,
                    threads=1),
        console=QUIET, quiet=True,
    )  # fmt: skip
    assert tuned.status == "complete"
    assert json.loads((tuned.run_dir / runs.CONFIG).read_text())["transfer"]["weights"]


def test_runs_of_different_protocols_are_never_one_row(tmp_path):
    common = dict(arch=TINY, dataset="digits", data_dir=str(tmp_path / "data"),
                  runs_dir=str(tmp_path / "runs"), max_epochs=1, threads=1)  # fmt: skip
    dirs = [
        train_run(TrainConfig(**common, seed=0, schedule="linear"), console=QUIET, quiet=True,
                  group="same", name="same-s0").run_dir,
        train_run(TrainConfig(**common, seed=1), console=QUIET, quiet=True, group="same",
                  name="same-s1").run_dir,
    ]  # fmt: skip
    table = aggregate_seeds(run_table(collect_runs(dirs)))
    assert len(table) == 2 and list(table["n"]) == [1, 1]
    assert set(table["protocol"]) == {
        "budget 1 epochs, linear decay",
        "study schedule (plateau, ≤ 1 epochs)",
    }
    out = tmp_path / "report.md"
    assert main(["report", *map(str, dirs), "--out", str(out)]) == 0
    # table rows only, not a dirty checkout's list of changed files
    rows = [row for row in out.read_text().split("## Relative")[0].splitlines()
            if row.startswith("| /") and "tiny" in row]  # fmt: skip
    assert len(rows) == 2 and "linear decay" in rows[0] and "plateau" in rows[1]


def test_a_parked_plateau_run_resumes_elsewhere(tmp_path):
    def interrupt(row):
        import signal

        signal.raise_signal(signal.SIGINT)

    cut = train_run(
        TrainConfig(arch=TINY, dataset="digits", data_dir=str(tmp_path / "data"),
                    runs_dir=str(tmp_path / "work"), max_epochs=2, threads=1),
        console=QUIET, quiet=True, on_epoch_end=interrupt,
    )  # fmt: skip
    parked = park(cut.run_dir, tmp_path / "in-progress" / "entry")
    assert (parked / runs.LAST).is_file() and not (parked / runs.PROFILE).exists()
    shutil.rmtree(tmp_path / "work")
    restored = restore(tmp_path / "in-progress" / "entry", tmp_path / "next-day")
    resumed = train_run(TrainConfig(), console=QUIET, quiet=True, resume=restored)
    assert resumed.status == "complete" and resumed.result["epochs_run"] == 2


def test_the_study_comparison_says_when_protocols_differ():
    from archbench.report.markdown import _protocol_lines
    from archbench.report.study import STUDY_PROTOCOL, study_comparison

    common = {"dataset": "cifar10", "num_classes": 10, "top5": None, "size_mb": 1.0, "n": 1}
    table = pd.DataFrame([
        common | {"arch": "squeezenet_dsc", "top1": 0.78, "params": 1,
                  "protocol": "budget 15 epochs, linear decay", "study_protocol": False},
        common | {"arch": "squeezenet", "top1": 0.89, "params": 2,
                  "protocol": STUDY_PROTOCOL, "study_protocol": True},
    ])  # fmt: skip
    comparison = study_comparison(table, "souza2020").set_index("arch")
    assert comparison.loc["squeezenet_dsc", "study's protocol"] == "no: differs"
    assert comparison.loc["squeezenet", "study's protocol"] == "yes"
    assert comparison.loc["squeezenet_dsc", "protocol"] == "budget 15 epochs, linear decay"
    [line, _] = _protocol_lines(comparison.reset_index())
    assert "Protocols differ from the study's (study schedule (plateau, ≤ 200 epochs))" in line
    assert "budget 15 epochs, linear decay" in line
    same = _protocol_lines(comparison.reset_index().iloc[[1]])
    assert same[0] == f"Every row trained under the study's protocol: {STUDY_PROTOCOL}."


def test_set_cannot_change_a_plan_entrys_protocol(tmp_path, capsys):
    (tmp_path / "plan.toml").write_text(PLAN)
    args = plan_args(tmp_path, "--report-only", "--set", "max_epochs=9")
    assert main(args) == 2
    assert "max_epochs belong to the plan file" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_the_plan_resumes_a_parked_run_copies_it_in_and_drops_the_parked_copy(tmp_path):
    def interrupt(row):
        import signal

        signal.raise_signal(signal.SIGINT)

    # Yesterday: the plan's plateau entry, interrupted after its first epoch, then parked.
    cut = train_run(
        TrainConfig(arch=TINY, dataset="digits", data_dir=str(tmp_path / "data"),
                    runs_dir=str(tmp_path / "yesterday"), max_epochs=2, threads=1),
        console=QUIET, quiet=True, on_epoch_end=interrupt,
    )  # fmt: skip
    parked_dir = tmp_path / "in-progress"
    park(cut.run_dir, parked_dir / "build-digits-plateau2-s0")
    (tmp_path / "plan.toml").write_text(PLAN)
    args = plan_args(tmp_path, "--only", "build-digits-plateau2-s0", "--parked-dir",
                     str(parked_dir))  # fmt: skip
    assert main(args) == 0
    [committed] = (tmp_path / "results").iterdir()
    assert committed.name == cut.run_dir.name  # the parked run itself, resumed to complete
    result = json.loads((committed / runs.RESULT).read_text())
    assert result["status"] == "complete" and result["epochs_run"] == 2
    assert "resuming" in (tmp_path / "work" / "build-digits-plateau2-s0" / cut.run_dir.name
                          / runs.LOG).read_text()  # fmt: skip
    assert not (parked_dir / "build-digits-plateau2-s0").exists()
