"""A report says which code generated it; the report script refuses uncommitted code."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from archbench.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = f"{REPO / 'tests' / 'tiny_digits_net.py'}:build"
SCRIPT = REPO / "reports" / "make_digits_report.sh"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A committed repository holding the report script and one tracked source file."""
    root = tmp_path / "repo"
    (root / "reports").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "reports" / SCRIPT.name)
    (root / "__init__.py").write_text("")
    (root / "model.py").write_text("x = 1\n")
    git("init", "-q", cwd=root)
    git("add", ".", cwd=root)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=root)
    return root


def test_git_state_names_the_commit_and_the_modified_files(checkout) -> None:
    from archbench.measure.sysinfo import git_state

    state = git_state(checkout)
    assert state.commit == git("rev-parse", "HEAD", cwd=checkout)
    assert not state.dirty and state.describe() == f"{state.commit} (clean)"
    (checkout / "model.py").write_text("x = 2\n")
    (checkout / "untracked.py").write_text("")  # not part of the tree: not listed
    dirty = git_state(checkout)
    assert dirty.changed == ("model.py",)
    assert dirty.describe() == f"{state.commit} (dirty: model.py)"


def test_report_header_records_the_generating_checkout(tmp_path) -> None:
    runs_dir = tmp_path / "runs"
    assert main(["run", "--arch", TINY, "--dataset", "digits", "--max-epochs", "1",
                 "--threads", "1", "--no-profile", "--quiet", "--runs-dir", str(runs_dir),
                 "--data-dir", str(tmp_path / "data")]) == 0  # fmt: skip
    out = tmp_path / "report.md"
    assert main(["report", "--runs-dir", str(runs_dir), "--out", str(out)]) == 0
    (line,) = [x for x in out.read_text().splitlines() if x.startswith("- report generated from")]
    if subprocess.run(["git", "ls-files", "--error-unmatch", "archbench/__init__.py"],
                      cwd=REPO, capture_output=True).returncode:  # fmt: skip
        # an installed archbench outside any checkout
        assert "no git checkout" in line
        return
    commit = git("rev-parse", "HEAD", cwd=REPO)
    dirty = git("status", "--porcelain", "--untracked-files=no", cwd=REPO) != ""
    assert commit in line
    assert ("(dirty: " in line) == dirty and ("(clean)" in line) == (not dirty)


def _stub_archbench(tmp_path: Path) -> dict[str, str]:
    """An ``archbench`` on PATH that only logs its arguments: the script's guard is what is
    tested here, not the 5 trainings behind it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "archbench"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.log"}\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                         "RUNS_DIR": str(tmp_path / "runs")}  # fmt: skip


def test_digits_report_script_refuses_a_dirty_checkout_unless_allowed(tmp_path, checkout):
    env = _stub_archbench(tmp_path)
    script = ["bash", "reports/make_digits_report.sh"]
    (checkout / "model.py").write_text("x = 2\n")
    refused = subprocess.run(script, cwd=checkout, env=env, capture_output=True, text=True)
    assert refused.returncode == 1
    assert "model.py" in refused.stderr and "--allow-dirty" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "calls.log").exists()  # nothing trained

    allowed = subprocess.run(
        [*script, "--allow-dirty"], cwd=checkout, env=env, capture_output=True, text=True
    )
    assert allowed.returncode == 0, allowed.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert len(calls) == 6 and calls[-1].startswith("report ")

    git("checkout", "--", "model.py", cwd=checkout)
    (tmp_path / "calls.log").unlink()
    clean = subprocess.run(script, cwd=checkout, env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 6
