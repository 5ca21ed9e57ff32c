"""``archbench list`` end to end, through the real console script where it matters."""

from __future__ import annotations

import importlib.metadata
import io
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from archbench.cli import main
from architectures import _registry as registry
from architectures import create_arch, list_archs
from tests.expected_archs import EXPECTED, MACS_TOLERANCE


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archbench", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_list_csv_carries_the_study_numbers():
    result = run_cli("list", "--format", "csv")
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == [
        "name", "family", "input_size", "params_c10", "params_c100", "macs_c10", "macs_miss",
        "description",
    ]  # fmt: skip
    assert sorted(frame["name"]) == sorted(EXPECTED)
    for row in frame.itertuples():
        expected = EXPECTED[row.name]
        assert row.params_c10 == expected.params_c10
        assert row.params_c100 == expected.params_c100
        assert abs(row.macs_c10 - expected.macs_c10) / expected.macs_c10 <= MACS_TOLERANCE


def test_list_json_with_pattern(capsys):
    assert main(["list", "--format", "json", "squeezenet*"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["squeezenet", "squeezenet_dsc"]
    assert rows[1]["params_c10"] == 248_670 and isinstance(rows[1]["macs_c10"], int)


def test_list_markdown_and_table(capsys):
    assert main(["list", "--format", "markdown", "vgg*"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| name") and "| vgg19" in out and "20040522" in out
    assert main(["list", "vgg*"]) == 0
    assert "20,040,522" in capsys.readouterr().out


def test_unknown_pattern_is_an_empty_result_with_a_message(capsys):
    assert main(["list", "--format", "json", "resnet*"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "no architecture matches 'resnet*'" in captured.err


@pytest.mark.slow
def test_user_file_is_listed(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(
        "from torch import nn\n"
        "def build(num_classes, in_channels=3):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.Flatten(),"
        " nn.Linear(4 * 30 * 30, num_classes))\n"
    )
    result = run_cli("list", "--format", "json", f"{path}:build")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    params = 3 * 4 * 9 + 4
    assert row["params_c10"] == params + 3600 * 10 + 10
    assert row["params_c100"] == params + 3600 * 100 + 100
    assert row["macs_c10"] == 4 * 30 * 30 * 27 + 3600 * 10


@pytest.mark.slow
def test_broken_user_file_is_one_line_error_without_traceback(tmp_path):
    path = tmp_path / "bad_net.py"
    path.write_text("from torch import nn\n\nraise ImportError('missing thing')\n")
    result = run_cli("list", f"{path}:build")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert f"{path}:3" in result.stderr and "missing thing" in result.stderr


def test_entry_point_plugins_are_registered(tmp_path, monkeypatch):
    (tmp_path / "plugin_nets.py").write_text(
        "from torch import nn\n"
        "def tiny(num_classes=10, in_channels=3):\n"
        '    """A plugin network."""\n'
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 32 * 32, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_point = importlib.metadata.EntryPoint(
        name="plugin_tiny", value="plugin_nets:tiny", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: [entry_point] if group == registry.ENTRY_POINT_GROUP else [],
    )
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert "plugin_tiny" in list_archs()
    model = create_arch("plugin_tiny", num_classes=3)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.slow
def test_a_reader_that_leaves_early_ends_the_listing_quietly():
    # `archbench list | head -1`: the pipe closes before archbench writes anything.
    process = subprocess.Popen(
        [sys.executable, "-m", "archbench", "list", "--format", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
