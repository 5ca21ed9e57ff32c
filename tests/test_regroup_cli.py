"""Issue 15 end to end: a fine digits model against one trained on even/odd, through the CLI.

Two real runs (three short epochs each, of a tiny CNN given as ``FILE.py:build`` so they learn
on a busy machine) serve every test: `run --regroup`, `--class-weight`, `profile --regroup`,
`compare`, `explain` and the report.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from archbench.cli import main
from archbench.errors import ArchbenchError
from archbench.train import rundir as runs

TINY_NET = f"{Path(__file__).with_name('tiny_digits_net.py')}:build"
PROFILE_FAST = ["--backends", "cpu-eager", "--samples", "8", "--warmup", "1", "--batch-sizes", "1"]
EVEN_ODD = "digits-even-odd"


def _train(tmp: Path, name: str, *extra: str) -> Path:
    code = main(
        ["run", "--arch", TINY_NET, "--dataset", "digits", "--max-epochs", "3",
         "--runs-dir", str(tmp / name), "--data-dir", str(tmp / "data"), "--no-profile",
         "--quiet", *extra]
    )  # fmt: skip
    assert code == 0
    (run,) = (tmp / name).iterdir()
    return run


@pytest.fixture(scope="module")
def fine_and_direct(tmp_path_factory) -> tuple[Path, Path]:
    """A 10-class digits run and a run trained directly on even/odd with balanced weights."""
    tmp = tmp_path_factory.mktemp("regroup")
    fine = _train(tmp, "fine")
    direct = _train(tmp, "direct", "--regroup", EVEN_ODD, "--class-weight", "balanced")
    return fine, direct


@pytest.fixture(scope="module")
def fine_merged(fine_and_direct) -> tuple[Path, str, str]:
    """The fine run profiled with ``--regroup`` and explained (4 misclassified images), as the
    compare and report tests read it; with what each command printed."""
    pytest.importorskip("captum")
    fine, _ = fine_and_direct
    printed = []
    for argv in (
        ["profile", str(fine), "--regroup", EVEN_ODD, *PROFILE_FAST],
        ["explain", str(fine), "--images", "misclassified:4"],
    ):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(argv) == 0
        printed.append(out.getvalue())
    return fine, *printed


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_direct_run_records_its_groups_and_weights(fine_and_direct):
    _, direct = fine_and_direct
    config = _json(direct / runs.CONFIG)
    assert config["train"]["regroup"] == EVEN_ODD
    assert config["data"]["classes"] == ["even", "odd"] and config["data"]["num_classes"] == 2
    assert config["regroup"]["class_to_group"] == [0, 1] * 5
    # balanced = n / (classes x count) on the training split the run really used
    weights = config["class_weights"]
    assert set(weights) == {"even", "odd"}
    assert weights["even"] * weights["odd"] > 0 and weights["even"] != weights["odd"]
    assert torch.load(direct / runs.BEST, weights_only=True)["num_classes"] == 2


def test_profile_of_the_direct_model_uses_group_labels(fine_and_direct):
    _, direct = fine_and_direct
    assert main(["profile", str(direct), "--quiet", *PROFILE_FAST]) == 0
    profile = _json(direct / runs.PROFILE)
    accuracy = profile["accuracy"]
    assert accuracy["n"] == 359 and [c["class"] for c in accuracy["per_class"]] == ["even", "odd"]
    # Profiler and trainer batch differently (float32 order): one near-tied image may flip.
    direct_top1 = _json(direct / runs.RESULT)["test_top1"]
    assert accuracy["top1"] == pytest.approx(direct_top1, abs=1.01 / 359)
    assert profile["regrouped"] is None


def test_profile_regroup_merges_the_fine_model(fine_merged):
    fine, printed, _ = fine_merged
    assert "regrouped (digits-even-odd)" in printed
    regrouped = _json(fine / runs.PROFILE)["regrouped"]
    with open(fine / "confusion_matrix.csv") as handle:
        fine_confusion = np.array([row[1:] for row in csv.reader(handle)][1:], dtype=int)
    even, odd = [0, 2, 4, 6, 8], [1, 3, 5, 7, 9]
    block = [[fine_confusion[np.ix_(r, c)].sum() for c in (even, odd)] for r in (even, odd)]
    assert regrouped["confusion"] == block and regrouped["n"] == 359
    assert regrouped["errors"] == block[0][1] + block[1][0]
    assert regrouped["binary"]["positive"] == "odd"
    assert 0.5 < regrouped["roc_auc"] <= 1.0
    assert [g["class"] for g in regrouped["per_group"]] == ["even", "odd"]
    for name in regrouped["files"].values():
        assert (fine / name).stat().st_size > 0
    assert (fine / "roc_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_fine_merged_against_direct(fine_and_direct, fine_merged, capsys):
    fine, direct = fine_and_direct
    assert main(["compare", str(fine), str(direct), "--regroup", EVEN_ODD, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 359 and 0 < result["p_value"] <= 1
    assert sum(map(sum, result["table"])) == 359
    assert result["errors_a"] == _json(fine / runs.PROFILE)["regrouped"]["errors"]
    direct_top1 = _json(direct / runs.RESULT)["test_top1"]
    assert result["errors_b"] == round(359 * (1 - direct_top1))
    assert main(["compare", str(fine), str(direct), "--regroup", EVEN_ODD]) == 0
    assert "McNemar exact p-value" in capsys.readouterr().out


def test_compare_refuses_what_it_cannot_pair(fine_and_direct, capsys):
    fine, direct = fine_and_direct
    assert main(["compare", str(fine), str(direct)]) == 2
    err = capsys.readouterr().err
    assert "compare with --regroup digits-even-odd" in err and err.count("\n") == 1

    from archbench.profile.compare import _same_test_set
    from archbench.profile.loaded import load_run

    run = load_run(fine)
    shuffled = replace(run, fine_labels=run.fine_labels.roll(1))
    with pytest.raises(ArchbenchError, match="not tested on the same images"):
        _same_test_set(run, shuffled)


def test_explain_writes_a_grid_of_misclassified_images(fine_merged):
    fine, _, printed = fine_merged
    assert "explain-saliency.png" in printed
    record = _json(fine / "explain.json")
    assert len(record["indices"]) == 4
    assert all(a != b for a, b in zip(record["labels"], record["predictions"], strict=True))
    assert (fine / "explain-saliency.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--regroup", "digits-even-od"], "did you mean 'digits-even-odd'"),
        (["run", "--regroup", "cifar10-animals-vehicles"], "not a class of this dataset"),
        (["run", "--class-weight", "1,2"], "gives 2 weights for 10 classes"),
        (["run", "--class-weight", "heavy"], "--class-weight must be 'balanced'"),
    ],
)
def test_bad_regroup_or_class_weight_writes_nothing(tmp_path, capsys, argv, message):
    runs_dir = tmp_path / "runs"
    assert main([*argv, "--dataset", "digits", "--runs-dir", str(runs_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_report_shows_the_regrouped_figures_and_the_grid(fine_merged, tmp_path):
    fine, _, _ = fine_merged
    out = tmp_path / "report.md"
    assert main(["report", str(fine), "--out", str(out)]) == 0
    page = out.read_text()
    assert "## Regrouped and explained" in page and "Regrouped as `digits-even-odd`" in page
    for name in (f"report-{fine.name}-roc.png", f"report-{fine.name}-explain-saliency.png"):
        assert f"]({name})" in page and (tmp_path / name).is_file()
