"""Seed groups: `archbench run --seeds`, grouping runs back, and their mean ± std and t-interval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from archbench.cli import main
from archbench.report import RunRecord
from archbench.report.aggregate import aggregate_seeds, group_keys, mean_std_interval
from archbench.report.study import study_comparison
from archbench.train import rundir as runs


@pytest.mark.slow
def test_run_seeds_makes_one_group_and_report_shows_one_row(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    code = main(["run", "--arch", "squeezenet_dsc", "--dataset", "digits", "--seeds", "0,1",
                 "--max-epochs", "1", "--threads", "2", "--no-profile", "--quiet",
                 "--runs-dir", str(runs_dir), "--data-dir", str(tmp_path / "data")])  # fmt: skip
    assert code == 0
    dirs = sorted(runs_dir.iterdir())
    configs = [json.loads((d / runs.CONFIG).read_text()) for d in dirs]
    group = configs[0]["group"]
    assert [d.name for d in dirs] == [f"{group}-s0", f"{group}-s1"]
    assert [c["group"] for c in configs] == [group, group]
    assert [c["train"]["seed"] for c in configs] == [0, 1]
    tops = [json.loads((d / runs.RESULT).read_text())["test_top1"] for d in dirs]

    out = tmp_path / "report.md"
    assert main(["report", "--runs-dir", str(runs_dir), "--out", str(out),
                 "--compare-study", "souza2020"]) == 0  # fmt: skip
    text = out.read_text()
    main_table = text.split("## Relative")[0]
    rows = [line for line in main_table.splitlines() if "| squeezenet_dsc" in line]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    mean, std = 100 * sum(tops) / 2, 100 * abs(tops[0] - tops[1]) / math.sqrt(2)
    assert cells[1] == f"{mean:.2f} ± {std:.2f}"
    assert cells[-1] == "2"
    assert "budgeted (1 epochs)" in rows[0]
    assert "## Targets of the study (souza2020)" in text


def test_seed_and_seeds_are_exclusive_and_nothing_is_written(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    base = ["run", "--dataset", "digits", "--runs-dir", str(runs_dir)]
    assert main([*base, "--seed", "1", "--seeds", "0,1"]) == 2
    assert "--seed or --seeds" in capsys.readouterr().err
    assert main([*base, "--seeds", "0,zero"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not runs_dir.exists()


def test_mean_std_and_t_interval_on_hand_numbers():
    mean, std, half = mean_std_interval([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82) and std == pytest.approx(0.02)
    assert half == pytest.approx(4.303 * 0.02 / math.sqrt(3))  # t(0.975, 2 dof) = 4.303
    assert mean_std_interval([0.9]) == (0.9, None, None)
    _, _, half40 = mean_std_interval([0.0, 1.0] * 20 + [0.5])  # 40 dof: t = 2.021
    assert half40 / (pd.Series([0.0, 1.0] * 20 + [0.5]).std() / math.sqrt(41)) == pytest.approx(
        2.021, abs=0.003
    )


def hand_table() -> pd.DataFrame:
    seeded = [
        {"top1": top1, "best_epoch": best, "epochs_run": 10, "seed": seed,
         "cpu-eager_mean_ms": ms, "cpu-eager_std_ms": 0.1, "cpu-eager_p50_ms": ms,
         "train_seconds": 100.0, "run_dir": f"r{seed}"}
        for seed, top1, best, ms in ((0, 0.8832, 3, 2.0), (1, 0.8800, 5, 3.0), (2, 0.8870, 4, 4.0))
    ]  # fmt: skip
    single = {"top1": 0.90, "best_epoch": 7, "epochs_run": 9, "seed": 0, "cpu-eager_mean_ms": 5.0,
              "cpu-eager_std_ms": 0.2, "cpu-eager_p50_ms": 5.0, "train_seconds": 90.0,
              "run_dir": "other"}  # fmt: skip
    rows = [r | {"arch": "squeezenet_dsc", "group": "g"} for r in seeded]
    rows.append(single | {"arch": "squeezenet", "group": "h"})
    common = {"dataset": "cifar10", "num_classes": 10, "top5": None, "params": 1, "size_mb": 1.0}
    return pd.DataFrame([common | row for row in rows])


def test_aggregate_seeds_on_hand_numbers():
    table = hand_table()
    grouped = aggregate_seeds(table).set_index("arch")
    dsc = grouped.loc["squeezenet_dsc"]
    assert dsc["n"] == 3 and dsc["seeds"] == "0,1,2"
    assert dsc["top1"] == pytest.approx((0.8832 + 0.8800 + 0.8870) / 3)
    assert dsc["top1_std"] == pytest.approx(pd.Series([0.8832, 0.8800, 0.8870]).std())
    assert dsc["best_epoch"] == "3–5" and dsc["epochs_run"] == "10"
    assert dsc["cpu-eager_mean_ms"] == pytest.approx(3.0)  # mean of the per-run means
    assert dsc["cpu-eager_std_ms"] == pytest.approx(math.sqrt(0.01 + 2 / 3))  # all samples
    assert dsc["train_seconds"] == pytest.approx(300.0) and dsc["epoch_seconds"] == 10.0
    # A group of one keeps its row as it was.
    single = grouped.loc["squeezenet"]
    original = table.iloc[3]
    assert single["n"] == 1 and single["best_epoch"] == original["best_epoch"]
    assert single["top1"] == original["top1"] and pd.isna(single.get("top1_std"))


def test_study_comparison_says_whether_the_study_lies_in_the_t_interval():
    grouped = aggregate_seeds(hand_table())
    comparison = study_comparison(grouped, "souza2020").set_index("arch")
    dsc = comparison.loc["squeezenet_dsc"]  # study: 88.32, ours 88.34 ± ~0.35 (n = 3)
    assert dsc["n"] == 3 and dsc["study_in_t95"] == "yes"
    assert dsc["top1_diff_pts"] == pytest.approx(100 * (0.8832 + 0.8800 + 0.8870) / 3 - 88.32)
    assert comparison.loc["squeezenet", "study_in_t95"] == "n = 1: no interval"
    far = grouped.assign(top1=grouped["top1"] - 0.05)
    far_comparison = study_comparison(far, "souza2020").set_index("arch")
    assert far_comparison.loc["squeezenet_dsc", "study_in_t95"] == "no"


def record(path: str, group: str | None = None, **train) -> RunRecord:
    settings = {"arch": "squeezenet_dsc", "dataset": "digits", "lr": 0.01, "seed": 0,
                "runs_dir": "runs", "max_epochs": 15, "schedule": "plateau"} | train  # fmt: skip
    config = {"train": settings} | ({"group": group} if group else {})
    return RunRecord(Path(path), config, {"status": "complete"}, None, [])


def test_runs_without_group_are_grouped_by_config_apart_from_seed():
    records = [
        record("a", seed=0),
        record("b", seed=1, runs_dir="elsewhere"),  # where it lives is not the run
        record("c", seed=2, lr=0.001),  # another setting: another group
        record("d", seed=0),  # seed 0 again: a rerun, not another seed
        record("e", group="G", seed=3),
        record("f", group="G", seed=4, lr=0.5),  # the group field decides
    ]
    a, b, c, d, e, f = group_keys(records)
    assert a == b
    assert len({a, c, d}) == 3
    assert e == f == "group:G | study schedule (plateau, ≤ 15 epochs)"  # the protocol too


def test_budgeted_runs_are_those_stopped_by_max_epochs():
    def budget(max_epochs, epochs_run, lr_drops=0, schedule="plateau"):
        run = record("x", max_epochs=max_epochs, schedule=schedule)
        result = {"status": "complete", "epochs_run": epochs_run, "lr_drops": lr_drops}
        return RunRecord(run.path, run.config, result, None, []).budget_epochs

    assert budget(10, 10) == 10
    assert budget(10, 7) is None  # the schedule stopped it first
    assert budget(10, 10, lr_drops=4) is None  # its 4th drop came at the last epoch
    assert budget(200, 200) is None  # the study's own budget
    assert budget(10, 10, schedule="early-stop") == 10


def test_seeded_suite_entries_share_a_group_across_runs_blocks(tmp_path):
    from archbench.suite import plan

    suite = tmp_path / "grid.toml"
    suite.write_text(
        'archs = []\ndatasets = ["digits"]\n'
        '[[runs]]\narch = "squeezenet_dsc"\nseeds = [0]\n'
        '[[runs]]\narch = "squeezenet"\n'
        '[[runs]]\narch = "squeezenet_dsc"\nseeds = [1, 2]\n'
        '[[runs]]\narch = "mobilenet"\nseeds = [0, 1]\nset = { lr = 0.001 }\n'
    )
    _, entries = plan(file=suite)
    groups = {entry.key: entry.group for entry in entries}
    dsc = {groups[f"squeezenet_dsc-digits-s{seed}"] for seed in (0, 1, 2)}
    assert len(dsc) == 1 and dsc.pop().startswith("squeezenet_dsc-digits-")
    assert groups["squeezenet-digits"] is None  # unseeded: a single run
    assert groups["mobilenet-digits-s0"] == groups["mobilenet-digits-s1"]
    assert groups["mobilenet-digits-s0"] != groups["squeezenet_dsc-digits-s0"]
