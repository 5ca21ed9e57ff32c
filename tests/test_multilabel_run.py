"""`--task multilabel` end to end on digit mosaics: run, profile, report, suites, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from archbench.cli import main
from archbench.measure import exclusive
from archbench.suite import plan
from archbench.train import rundir as runs

# No cold starts: a fresh interpreter per backend is the same for every task (test_profile_cli).
FAST = ["--backends", "cpu-eager", "--samples", "20", "--warmup", "1", "--batch-sizes", "1",
        "--no-cold-start"]  # fmt: skip
KINDS = {"exact", "partial", "empty", "wrong"}


@pytest.fixture(autouse=True)
def private_node_lock(tmp_path_factory, monkeypatch):
    """Profiles wait for other archbench jobs on the machine; these tests need not."""
    monkeypatch.setenv(exclusive.LOCK_DIR_ENV, str(tmp_path_factory.getbasetemp() / "locks"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("multilabel")


def train(workdir: Path, name: str, *flags: str) -> Path:
    runs_dir = workdir / name
    code = main(
        ["run", "--arch", "squeezenet_dsc", "--dataset", "digits-mosaic", "--task", "multilabel",
         "--runs-dir", str(runs_dir), "--data-dir", str(workdir / "data"), "--threads", "2",
         "--quiet", *FAST, *flags]
    )  # fmt: skip
    assert code == 0
    (run_dir,) = runs_dir.iterdir()
    return run_dir


@pytest.fixture(scope="module")
def done_when_run(workdir, tmp_path_factory) -> Path:
    """The issue's command: seed 000's fixed weight 10, two epochs, then the profile."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(exclusive.LOCK_DIR_ENV, str(tmp_path_factory.getbasetemp() / "locks"))
        return train(workdir, "w10", "--pos-weight", "10", "--max-epochs", "2")


def read(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text())


@pytest.mark.slow
def test_profile_holds_every_multilabel_figure(done_when_run):
    profile, result = read(done_when_run, runs.PROFILE), read(done_when_run, runs.RESULT)
    block = profile["multilabel"]
    assert profile["accuracy"] is None and block["n"] == 359 and block["num_labels"] == 10
    for key in ("hamming_error", "all_negative_hamming_error", "map", "all_negative_map"):
        assert 0 <= block[key] <= 1
    assert block["micro"]["f1"] > 0 and block["macro"]["f1"] > 0
    assert set(block["kinds"]) == KINDS and sum(block["kinds"].values()) == pytest.approx(1)
    assert len(block["per_label"]) == 10 and block["threshold"] == 0.5
    # 2.47 labels of 10 per test mosaic: the all-negative baseline is their share
    assert block["all_negative_hamming_error"] == pytest.approx(0.2465, abs=1e-3)
    # The profiler evaluates the same best.pt on the same test split as the trainer, but in
    # other batches, so float32 sums run in another order (about 1e-6 relative; the AMD host
    # gave mAP 0.36122329 against 0.36122925). Two scores that close may swap ranks: one swap
    # moves one label's AP by at most 1/positives (about 88 here), mAP by a tenth of that; a
    # logit that close to 0 may cross the threshold: one of 3,590 decisions.
    assert block["map"] == pytest.approx(result["test_map"], abs=1e-3)
    assert block["hamming_error"] == pytest.approx(result["test_hamming"], abs=1.01 / 3590)
    assert not (done_when_run / "confusion_matrix.csv").exists()


def test_task_weight_and_selection_are_recorded(done_when_run):
    config, result = read(done_when_run, runs.CONFIG), read(done_when_run, runs.RESULT)
    assert config["train"]["task"] == "multilabel" and config["train"]["pos_weight"] == "10"
    assert config["loss"]["pos_weight_values"] == [10.0] * 10
    assert config["data"]["multilabel"] is True and config["data"]["train"] == 1294
    assert result["selected_on"] == "val_map" and result["pos_weight"] == "10"
    header = (done_when_run / runs.METRICS).read_text().splitlines()[0].split(",")
    assert {"train_hamming", "val_map", "val_hamming", "val_micro_f1"} <= set(header)


@pytest.mark.slow
def test_auto_weight_learns_far_above_the_all_negative_baseline(workdir):
    # batch 32: 41 steps an epoch (at batch 128, three epochs are 33 steps and mAP barely moves)
    run_dir = train(
        workdir, "auto", "--pos-weight", "auto", "--lr", "0.001", "--batch-size", "32",
        "--max-epochs", "4",
    )  # fmt: skip
    block = read(run_dir, runs.PROFILE)["multilabel"]
    weights = read(run_dir, runs.CONFIG)["loss"]["pos_weight_values"]
    assert len(set(weights)) == 1 and 2.5 < weights[0] < 3.5  # ~7.5 negatives per 2.5 positives
    # measured: test mAP 0.877 against 0.247, Hamming error 0.153 against 0.247, micro F1 0.735
    assert block["map"] > block["all_negative_map"] + 0.4
    assert block["hamming_error"] < block["all_negative_hamming_error"]
    assert block["micro"]["f1"] > 0.6


@pytest.mark.slow
def test_profile_follows_the_run_and_takes_another_threshold(done_when_run, capsys):
    assert main(["profile", str(done_when_run), *FAST, "--threshold", "0.9"]) == 0
    assert "all-negative" in capsys.readouterr().out
    strict = read(done_when_run, runs.PROFILE)["multilabel"]
    assert strict["threshold"] == 0.9
    assert main(["profile", str(done_when_run), *FAST]) == 0
    usual = read(done_when_run, runs.PROFILE)["multilabel"]
    assert usual["threshold"] == 0.5  # the run's own threshold again
    assert strict["labels_per_image"]["predicted"] <= usual["labels_per_image"]["predicted"]
    assert strict["map"] == pytest.approx(usual["map"])  # mAP does not depend on it


@pytest.mark.slow
def test_report_shows_the_baseline_beside_the_error_and_the_weight_sweep(
    done_when_run, workdir, capsys
):
    # A weight sweep holds the training set fixed: the same images, another pos_weight.
    other = train(workdir, "w1", "--pos-weight", "1", "--max-epochs", "1")
    out = workdir / "report" / "report.md"
    assert main(["report", str(done_when_run), str(other), "--out", str(out)]) == 0
    page = out.read_text()
    assert "## digits-mosaic (multi-label)" in page
    assert re.search(r"\|\s*Hamming error\s*\|\s*all-negative\s*\|", page)
    assert "multilabel-vs-pos_weight" in page and "multilabel-vs-train_images" not in page
    figure = "report-digits-mosaic-squeezenet_dsc-multilabel-vs-pos_weight.png"
    assert (out.parent / figure).is_file()
    capsys.readouterr()
    assert main(["report", str(done_when_run), "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert "hamming_error" in csv_text and "all_negative_hamming_error" in csv_text


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "digits", "--pos-weight", "10"], "--pos-weight weighs positive labels"),
        (["--dataset", "digits", "--task", "multilabel"], "needs a multi-label dataset"),
        (["--dataset", "digits-mosaic"], "is a multi-label dataset: add --task multilabel"),
        (["--dataset", "digits-mosaic", "--task", "multilabel", "--pos-weight", "x"], "positive"),
        (["--dataset", "digits-mosaic", "--task", "multilabel", "--threshold", "1"], "(0, 1)"),
        (["--dataset", "digits-mosaic", "--train-limit", "9999", "--task", "multilabel"], "9999"),
        (
            ["--dataset", "digits-mosaic", "--task", "multilabel", "--weights", "w.pt"],
            "--weights/--finetune (transfer learning) support single-label classification only",
        ),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys, flags, message):
    runs_dir = tmp_path / "runs"
    code = main(
        ["run", "--runs-dir", str(runs_dir), "--data-dir", str(tmp_path / "data"), "--quiet",
         "--no-profile", *flags]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_csv_with_a_missing_image_fails_before_any_run_directory(tmp_path, capsys):
    table = tmp_path / "labels.csv"
    table.write_text("image,labels,split\nnowhere.jpg,cat;animal,train\n")
    runs_dir = tmp_path / "runs"
    code = main(
        ["run", "--dataset", f"csv:{table}", "--task", "multilabel", "--runs-dir", str(runs_dir),
         "--data-dir", str(tmp_path / "data"), "--quiet", "--no-profile"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "line 2: image 'nowhere.jpg' not found" in err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_sweep_presets_plan_one_run_per_value():
    _, weights = plan(preset="seed000-weights")
    assert [e.key for e in weights] == [
        f"squeezenet_dsc-digits-mosaic-pos_weight{w}" for w in (1, 10, 100, 1000)
    ]
    assert {e.overrides["pos_weight"] for e in weights} == {"1", "10", "100", "1000"}
    assert all(e.overrides["task"] == "multilabel" for e in weights)
    _, sizes = plan(preset="seed000-sizes", archs="squeezenet_dsc", overrides={"seeds": [0, 1]})
    assert len(sizes) == 8 and sizes[0].key.endswith("train_limit150-s0")
    assert sizes[0].train_config(Path("suite")).train_limit == 150
