"""`archbench report` over real one-epoch digits runs, and its table arithmetic on known inputs."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from archbench.cli import main
from archbench.measure.complexity import count_parameters
from archbench.profile import ProfileConfig, profile_run
from archbench.report import (
    RunRecord,
    collect_runs,
    faster_pct,
    find_run_dirs,
    pareto_front,
    relative_table,
    run_table,
    study_comparison,
)
from archbench.train import TrainConfig, train_run
from archbench.train import rundir as runs
from architectures import create_arch
from tests.conftest import copy_run

QUIET = Console(quiet=True)
FAST_PROFILE = ProfileConfig(backends=("cpu-eager", "cpu-onnxruntime"), samples=20, warmup=2,
                             batch_sizes=(1,), cold_start=False)  # fmt: skip


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, digits_run) -> Path:
    """Two complete, profiled one-epoch runs (squeezenet_dsc: the session's shared run) and one
    interrupted run."""
    tmp = tmp_path_factory.mktemp("report")
    common = dict(dataset="digits", data_dir=str(tmp / "data"), runs_dir=str(tmp / "runs"),
                  max_epochs=1, threads=2)  # fmt: skip
    outcome = train_run(TrainConfig(arch="squeezenet", **common), console=QUIET, quiet=True)
    profile_run(outcome.run_dir, FAST_PROFILE, console=QUIET, quiet=True)
    copy_run(digits_run, tmp / "runs")
    interrupted = train_run(
        # 128 images: one step makes the epoch the interruption follows (the report lists it)
        TrainConfig(arch="mobilenet", **(common | {"max_epochs": 2, "train_limit": 128})),
        console=QUIET,
        quiet=True,
        on_epoch_end=lambda row: signal.raise_signal(signal.SIGINT),
    )
    assert interrupted.status == "interrupted"
    return tmp / "runs"


def result_of(runs_dir: Path, arch: str) -> tuple[dict, dict]:
    for path in find_run_dirs(runs_dir):
        config = json.loads((path / runs.CONFIG).read_text())
        if config["train"]["arch"] == arch:
            return (
                json.loads((path / runs.RESULT).read_text()),
                json.loads((path / runs.PROFILE).read_text()),
            )
    raise AssertionError(arch)


@pytest.mark.slow
def test_markdown_report_holds_the_runs_figures(runs_dir, tmp_path, capsys):
    out = tmp_path / "out" / "digits.md"
    code = main(["report", "--runs-dir", str(runs_dir), "--out", str(out),
                 "--compare-study", "souza2020", "--note", "budget: 1 epoch"])  # fmt: skip
    assert code == 0
    assert "2 complete of 3 runs" in capsys.readouterr().out
    text = out.read_text()
    assert "## digits" in text and "budget: 1 epoch" in text
    for arch in ("squeezenet", "squeezenet_dsc"):
        result, profile = result_of(runs_dir, arch)
        row = next(line for line in text.splitlines() if line.startswith(f"| {arch} "))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == f"{100 * result['test_top1']:.2f}"
        assert cells[2] == f"{profile['params']['trainable']:,}"
        eager = profile["latency"]["cpu-eager"]["batch1"]
        assert f"{eager['mean_ms']:.3f} ± {eager['std_ms']:.3f}" in cells
    assert "## Relative to squeezenet" in text and "## Efficiency (roofline)" in text
    assert "## Compared with the study (souza2020)" in text
    assert "squeezenet_dsc / squeezenet CPU time" in text
    # The interrupted run is listed, not dropped.
    not_included = text.split("## Runs not included")[1]
    assert "mobilenet" in not_included and "interrupted" in not_included

    pngs = sorted(out.parent.glob("*.png"))
    assert len(pngs) == 4  # two training curves, accuracy vs params and vs latency
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert all(f"]({p.name})" in text for p in pngs)


def test_csv_and_json_carry_the_same_numbers(runs_dir, capsys):
    assert main(["report", "--runs-dir", str(runs_dir), "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert main(["report", "--runs-dir", str(runs_dir), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(frame) == len(records) == 3
    complete = frame[frame["status"] == "complete"].set_index("arch")
    for arch in ("squeezenet", "squeezenet_dsc"):
        result, profile = result_of(runs_dir, arch)
        assert complete.loc[arch, "top1"] == pytest.approx(result["test_top1"])
        assert complete.loc[arch, "params"] == profile["params"]["trainable"]
        assert complete.loc[arch, "cpu-onnxruntime_p50_ms"] == pytest.approx(
            profile["latency"]["cpu-onnxruntime"]["batch1"]["p50_ms"]
        )
    assert frame[frame["arch"] == "mobilenet"]["status"].tolist() == ["interrupted"]


def test_relative_columns_on_known_inputs():
    table = pd.DataFrame(
        [
            {"dataset": "d", "arch": "base", "params": 1000, "size_mb": 4.0, "top1": 0.90,
             "cpu-eager_mean_ms": 10.0},
            {"dataset": "d", "arch": "small", "params": 250, "size_mb": 1.0, "top1": 0.85,
             "cpu-eager_mean_ms": 8.0},
            {"dataset": "d", "arch": "slow", "params": 3000, "size_mb": 12.0, "top1": 0.93,
             "cpu-eager_mean_ms": 15.0},
        ]
    )  # fmt: skip
    relative = relative_table(table, "base").set_index("arch")
    assert relative.loc["small", "params_pct"] == pytest.approx(25.0)
    assert relative.loc["small", "size_pct"] == pytest.approx(25.0)
    assert relative.loc["small", "top1_diff_pts"] == pytest.approx(-5.0)
    assert relative.loc["small", "cpu-eager_faster_pct"] == pytest.approx(20.0)
    assert relative.loc["slow", "cpu-eager_faster_pct"] == pytest.approx(-50.0)
    assert relative.loc["base", "params_pct"] == pytest.approx(100.0)
    # The study's own example: AlexNet on its GPU against its CPU is ~95% faster.
    assert faster_pct(0.76, 15.39) == pytest.approx(95.06, abs=0.01)
    assert relative_table(table, "absent").empty


def test_pareto_front():
    points = [(1, 80), (2, 85), (3, 84), (4, 90), (2, 79)]
    assert pareto_front(points) == [0, 1, 3]


def test_study_comparison_finds_all_five_parameter_counts_equal(runs_dir):
    (template,) = [r for r in collect_runs(find_run_dirs(runs_dir)) if r.arch == "squeezenet"]
    records = []
    for arch in ("squeezenet_dsc", "squeezenet", "mobilenet", "alexnet", "vgg19"):
        for classes in (10, 100):
            config = json.loads(json.dumps(template.config))
            config["train"]["arch"], config["data"]["num_classes"] = arch, classes
            params = count_parameters(create_arch(arch, num_classes=classes)).trainable
            profile = {"params": {"trainable": params}, "size_bytes": {"state_dict": None}}
            records.append(RunRecord(template.path, config, template.result, profile, []))
    comparison = study_comparison(run_table(records), "souza2020")
    assert len(comparison) == 10 and comparison["params_equal"].all()
    # Digits is not the study's dataset: accuracy is not compared, parameters are.
    assert comparison["study_top1_pct"].isna().all()


def test_empty_or_missing_runs_dir(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", "--runs-dir", str(tmp_path / "empty")]) == 2
    assert "no run directories" in capsys.readouterr().err
    assert main(["report", "--runs-dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", "--runs-dir", str(tmp_path), "--compare-study", "smith99"]) == 2
    assert "unknown study" in capsys.readouterr().err


def test_run_table_skips_incomplete_runs(runs_dir):
    table = run_table(collect_runs(find_run_dirs(runs_dir)))
    assert sorted(table["arch"]) == ["squeezenet", "squeezenet_dsc"]


def test_an_unknown_baseline_is_one_line_and_writes_nothing(runs_dir, tmp_path, capsys):
    out = tmp_path / "r.md"
    assert main(["report", "--runs-dir", str(runs_dir), "--baseline", "vgg16",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--baseline 'vgg16' is not among the complete runs (squeezenet, squeezenet_dsc)" in err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(
    ("name", "damage", "remedy"),
    [
        ("profile.json", lambda text: text[: len(text) // 2], "archbench profile"),
        ("result.json", lambda text: text[:10], "train it again"),
        ("metrics.csv", lambda text: text.replace("0.", "0.x", 1), "remove it"),
    ],
)
def test_a_damaged_run_file_is_one_line_naming_it(runs_dir, tmp_path, capsys, name, damage,
                                                  remedy):  # fmt: skip
    import shutil

    source = next(p for p in find_run_dirs(runs_dir) if (p / runs.PROFILE).is_file())
    run = shutil.copytree(source, tmp_path / source.name)
    (run / name).write_text(damage((run / name).read_text()))
    assert main(["report", str(run), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert str(run / name) in err and remedy in err and err.count("\n") == 1


def _curve(rows: list[tuple[float, float, float]]) -> list[dict]:
    """metrics.csv rows from (lr, train_acc, val_acc) per epoch."""
    return [
        {"epoch": i + 1, "lr": lr, "train_acc": train, "val_acc": val}
        for i, (lr, train, val) in enumerate(rows)
    ]


def test_curve_reading_tells_a_generalization_gap_from_a_run_stopped_early():
    from archbench.report.study_targets import curve_reading

    converged = _curve(
        [(0.01, 0.80, 0.78), (0.01, 0.86, 0.81), (0.001, 0.90, 0.85), (0.001, 0.91, 0.855),
         (0.0001, 0.915, 0.856), (0.0001, 0.916, 0.855)]
    )  # fmt: skip
    reading = curve_reading(converged)
    assert "selected epoch (5 of 6)" in reading and "(5.9 points apart)" in reading
    assert "85.5% at lr 0.001, 85.6% at lr 0.0001" in reading
    assert "not more epochs" in reading
    rising = _curve([(0.01, 0.60, 0.58), (0.001, 0.66, 0.64), (0.001, 0.68, 0.66)])
    assert "still improving when it stopped" in curve_reading(rising)
    close = _curve([(0.01, 0.60, 0.59), (0.001, 0.61, 0.595), (0.0001, 0.61, 0.596)])
    assert "underfits" in curve_reading(close)
    assert curve_reading([]) is None
