"""``--split-seed`` fixes the validation split while ``--seed``/``--seeds`` vary the rest."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from archbench.cli import main
from archbench.data import load_data
from archbench.train import rundir as runs
from archbench.train.config import TrainConfig

TINY = f"{Path(__file__).resolve().parent / 'tiny_digits_net.py'}:build"


def _validation(config: dict) -> torch.Tensor:
    """The images of a saved run's validation split, rebuilt from its config.json."""
    train = TrainConfig.from_dict(config["train"]).resolve_input_shape()
    return load_data(train.data_config(download=False)).val.images


def test_seeds_share_one_split_and_the_report_refuses_mixed_splits(tmp_path, capsys) -> None:
    runs_dir, data_dir = tmp_path / "runs", tmp_path / "data"
    code = main(["run", "--arch", TINY, "--dataset", "digits", "--seeds", "0,1",
                 "--max-epochs", "1", "--threads", "1", "--no-profile", "--quiet",
                 "--runs-dir", str(runs_dir), "--data-dir", str(data_dir)])  # fmt: skip
    assert code == 0
    dirs = sorted(runs_dir.iterdir())
    configs = [json.loads((d / runs.CONFIG).read_text()) for d in dirs]
    assert [(c["train"]["seed"], c["train"]["split_seed"]) for c in configs] == [(0, 0), (1, 0)]
    assert torch.equal(_validation(configs[0]), _validation(configs[1]))

    out = tmp_path / "report.md"
    assert main(["report", "--runs-dir", str(runs_dir), "--out", str(out)]) == 0
    capsys.readouterr()

    # A run from before --split-seed split by its seed: seed 1, so not the other run's split.
    legacy = configs[1]
    del legacy["train"]["split_seed"]
    (dirs[1] / runs.CONFIG).write_text(json.dumps(legacy))
    assert not torch.equal(_validation(configs[0]), _validation(legacy))
    assert main(["report", "--runs-dir", str(runs_dir), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "mixes validation splits" in error and "--split-seed" in error
    assert str(dirs[1]) in error and "split seed 1" in error
    assert len(error.splitlines()) == 1


def test_split_seed_and_seed_are_recorded_apart(tmp_path) -> None:
    runs_dir = tmp_path / "runs"
    code = main(["run", "--arch", TINY, "--dataset", "digits", "--seed", "5", "--split-seed",
                 "3", "--max-epochs", "1", "--threads", "1", "--no-profile", "--quiet",
                 "--runs-dir", str(runs_dir), "--data-dir", str(tmp_path / "data")])  # fmt: skip
    assert code == 0
    (run_dir,) = runs_dir.iterdir()
    train = json.loads((run_dir / runs.CONFIG).read_text())["train"]
    assert (train["seed"], train["split_seed"]) == (5, 3)
    config = TrainConfig.from_dict(train)
    assert config.data_config().split_seed == 3
