"""Where a training step's time goes (archbench.train.breakdown) and the throughput script's
machine-readable outputs: ``--json``, ``--breakdown-csv`` and ``--ab`` on tiny configurations.

The tests assert structure (phases, operators, fields, arithmetic between fields), never a
timing: timings on a shared CI machine mean nothing.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from rich.console import Console

from archbench.data import load_data
from archbench.measure.complexity import count_macs
from archbench.measure.numerics import bf16_skip_reason
from archbench.train import RunLog, TrainConfig, Trainer
from archbench.train.breakdown import CSV_COLUMNS, OTHER, PHASES, profile_steps
from benchmarks import train_throughput
from tests.conftest import SHARED_DATA, TINY_NET
from tests.tiny_digits_net import build

ARCHIVE = SHARED_DATA / "cifar10-jpg-mini.tar.gz"
TINY_LOOP = ["--archive", str(ARCHIVE), "--archs", TINY_NET, "--batch-size", "16", "--warmup", "1"]
TINY_CONVOLUTIONS = 2  # tests/tiny_digits_net.py


@pytest.fixture(scope="module")
def breakdown(data_dir, tmp_path_factory):
    config = TrainConfig(
        arch=TINY_NET, dataset="digits", data_dir=str(data_dir), train_limit=64, batch_size=16
    ).resolve_input_shape()
    data = load_data(config.data_config())
    config = config.resolved(data)
    run_dir = tmp_path_factory.mktemp("breakdown")
    console = Console(quiet=True)
    trainer = Trainer(config, data, run_dir, RunLog(run_dir / "log", console, True), console)
    # 4 batches an epoch: 3 warm-up steps and 2 profiled ones cross into a second epoch.
    return profile_steps(trainer, steps=2, warmup=3)


def test_breakdown_splits_a_step_into_its_phases(breakdown):
    phase_ms = breakdown.phase_ms()
    assert list(phase_ms) == [*PHASES, OTHER]
    for phase in ("data", "forward", "backward", "optimizer"):
        assert phase_ms[phase] > 0, phase
    names = {
        phase: {op.operator for op in breakdown.operators if op.phase == phase} for phase in PHASES
    }
    assert "aten::convolution_backward" in names["backward"]
    assert "aten::convolution_backward" not in names["forward"]
    assert any("convolution" in name for name in names["forward"])
    assert any(name.startswith("Optimizer.step") for name in names["optimizer"])
    assert "aten::index_select" in names["data"]  # the shuffled batch gathered from memory
    # Per step: each convolution runs its backward once, whatever the profiled step count.
    backward_calls = sum(
        op.calls for op in breakdown.operators if op.operator == "aten::convolution_backward"
    )
    assert backward_calls == TINY_CONVOLUTIONS


def test_breakdown_rows_add_up_to_the_profiled_time(breakdown):
    operators = breakdown.operators
    assert [op.self_cpu_ms for op in operators] == sorted(
        (op.self_cpu_ms for op in operators), reverse=True
    )
    assert math.isclose(sum(op.share_of_step for op in operators), 1.0, rel_tol=1e-9)
    assert math.isclose(sum(breakdown.phase_ms().values()), breakdown.cpu_ms, rel_tol=1e-9)
    # Self times of one thread cannot exceed the wall time that held them (the autograd
    # engine runs CPU backward on the calling thread, inside the profiled window).
    assert 0 < breakdown.cpu_ms <= breakdown.wall_ms * 1.01
    convolutions = [op for op in operators if op.operator == "aten::convolution_backward"]
    assert all("x" in op.input_shapes and "[" not in op.input_shapes for op in convolutions)


def test_breakdown_csv_of_the_script(tmp_path, capsys):
    path = tmp_path / "out" / "breakdown.csv"
    code = train_throughput.main(
        [*TINY_LOOP, "--breakdown", "--breakdown-steps", "1", "--precisions", "fp32",
         "--breakdown-with", "optimizer-foreach", "--breakdown-csv", str(path)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "aten::convolution_backward" in printed and "% of step" in printed
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {row["arch"] for row in rows} == {TINY_NET}
    assert {row["precision"] for row in rows} == {"fp32"}
    for variant in ("default", "optimizer-foreach"):
        mine = [row for row in rows if row["variant"] == variant]
        assert {"data", "forward", "backward", "optimizer"} <= {row["phase"] for row in mine}
        assert math.isclose(sum(float(row["share_of_step"]) for row in mine), 1.0, rel_tol=1e-6)
    # foreach Adam updates every parameter in one batched call: its own operators show it
    # (torch's default on CPU tensors is a loop over the parameters, with no _foreach_ ops).
    foreach = {row["operator"] for row in rows if row["variant"] == "optimizer-foreach"}
    default = {row["operator"] for row in rows if row["variant"] == "default"}
    assert any(name.startswith("aten::_foreach_") for name in foreach)
    assert not any(name.startswith("aten::_foreach_") for name in default)


def test_throughput_json_rows_and_host(tmp_path, capsys):
    path = tmp_path / "throughput.json"
    code = train_throughput.main(
        [*TINY_LOOP, "--steps", "2", "--repeats", "1", "--workers", "0", "--json", str(path),
         "--with", "depthwise-fp32"]
    )  # fmt: skip
    assert code == 0
    document = json.loads(path.read_text())
    assert "forward MACs" in document["convention"] and "x 3" in document["convention"]
    host = document["host"]
    assert host["bf16_native"] is (bf16_skip_reason() is None)
    assert (
        host["versions"]["torch"] == torch.__version__.split("+")[0]
        or host["versions"]["torch"] == torch.__version__
    )
    assert host["cpu_model"] and host["torch_threads"] == torch.get_num_threads()
    assert len(host["load_average"]) == len(host["load_average_end"]) == 3
    peak = document["peak"]["gflops"]
    rows = document["rows"]
    # --with: a bf16-only candidate gets a column beside bf16 and none beside fp32
    assert [(row["arch"], row["precision"], row["variant"]) for row in rows] == [
        (TINY_NET, "fp32", "default"),
        (TINY_NET, "bf16", "default"),
        (TINY_NET, "bf16", "depthwise-fp32"),
    ]
    macs = count_macs(build(10, 3), (1, 3, 32, 32))
    for row in rows:
        assert row["forward_macs_per_image"] == macs
        assert row["training_flops_per_image"] == 6 * macs
        assert row["images_per_s"] > 0 and row["reference_images_per_s"] > 0
        assert math.isclose(
            row["ratio_to_reference"], row["images_per_s"] / row["reference_images_per_s"]
        )
        assert math.isclose(row["achieved_gflops"], row["images_per_s"] * 6 * macs / 1e9)
        assert math.isclose(row["peak_fraction"], row["achieved_gflops"] / peak)
        assert 0 < row["peak_fraction"] < 1
    assert "% fp32 peak" in capsys.readouterr().out


def test_ab_rounds_pair_default_and_candidate(tmp_path):
    path = tmp_path / "ab.json"
    code = train_throughput.main(
        [*TINY_LOOP, "--steps", "1", "--precisions", "fp32", "--ab", "optimizer-foreach",
         "--rounds", "2", "--json", str(path)]
    )  # fmt: skip
    assert code == 0
    (row,) = json.loads(path.read_text())["ab"]
    assert row["candidate"] == "optimizer-foreach"
    assert row["options"] == {"optimizer_impl": "foreach"}
    assert len(row["default_rounds"]) == len(row["candidate_rounds"]) == 2
    low, high = row["speedup_ci95"]
    assert low <= row["speedup"] <= high
    assert row["verdict"] in ("faster", "slower", "same", "unsure")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ab", "turbo"], "--ab turbo: choose from"),
        (["--precisions", "fp16"], "--precisions fp16: choose from"),
        (["--breakdown-csv", "x.csv"], "--breakdown-csv needs --breakdown"),
        (["--breakdown-with", "compile"], "--breakdown-with needs --breakdown"),
        (["--breakdown", "--breakdown-with", "turbo"], "--breakdown-with turbo: choose from"),
        (["--breakdown", "--ab", "compile"], "separate modes"),
        (["--archive", "/nonexistent.tar.gz"], "no such file"),
    ],
)
def test_bad_arguments_fail_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_throughput.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_network_fails_before_any_timing(capsys):
    code = train_throughput.main(
        ["--archive", str(ARCHIVE), "--archs", "no_such_net", "--breakdown"]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and "no_such_net" in error
    assert len(error.strip().splitlines()) == 1
