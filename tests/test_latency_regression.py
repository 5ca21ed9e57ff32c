"""The latency regression tool on real git repositories: A/B fails a slowed commit, bisect finds it.

A throw-away repository holds a copy of this project and four commits: base, an unrelated change,
a commit that makes squeezenet_dsc's forward about twice as slow, another unrelated change. Each
case runs ``benchmarks/latency_regression.py`` of that repository in a subprocess on one network
and one backend with few rounds: the slowdown is large enough that the verdict is not noise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.ab_reliability import add_slowdown, commit, copy_project, git

CASE = "squeezenet_dsc-cpu-eager"
FAST = ["--select", CASE, "--rounds", "12", "--warmup", "2"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    repo = copy_project(tmp_path_factory.mktemp("project") / "repo")
    shas = {"base": git(repo, "rev-parse", "HEAD")}
    (repo / "NOTES.md").write_text("an unrelated change\n")
    shas["unrelated"] = commit(repo, "notes")
    shas["slow"] = add_slowdown(repo, 1.0)
    (repo / "NOTES.md").write_text("another unrelated change\n")
    shas["after"] = commit(repo, "more notes")
    return {"repo": repo, **shas}


def tool(repo: Path, *args: str, **popen) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "latency_regression.py"), *args],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600, **popen,
    )  # fmt: skip


def assert_left_as_it_was(repo: Path, head: str) -> None:
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert len(git(repo, "worktree", "list").splitlines()) == 1, "a worktree was left behind"
    assert git(repo, "for-each-ref", "refs/bisect") == ""
    assert not (repo / ".git" / "BISECT_LOG").exists()


@pytest.mark.slow
def test_ab_fails_on_the_slowed_network_and_names_it(project, tmp_path):
    out = tmp_path / "ab.json"
    result = tool(project["repo"], "ab", "--base", project["unrelated"], "--json", str(out), *FAST)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"REGRESSION: {CASE}" in result.stdout
    row = json.loads(out.read_text())["benchmarks"][0]
    assert row["name"] == CASE and row["verdict"] == "slower" and row["ratio"] > 1.3
    assert row["ci_low"] <= row["ratio"] <= row["ci_high"] and row["p_value"] < 0.01
    assert_left_as_it_was(project["repo"], project["after"])


@pytest.mark.slow
def test_bisect_names_the_commit_that_slowed_the_network(project):
    result = tool(project["repo"], "bisect", "--good", project["base"], "--bad", "HEAD", *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"first bad commit: {project['slow']} slow squeezenet_dsc down" in result.stdout
    assert CASE in result.stdout.split("first bad commit:")[1]
    assert_left_as_it_was(project["repo"], project["after"])


@pytest.mark.slow
def test_interrupted_bisect_leaves_the_repository_as_it_was(project):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    process = subprocess.Popen(
        [sys.executable, str(project["repo"] / "benchmarks" / "latency_regression.py"), "bisect",
         "--good", project["base"], "--bad", "HEAD", *FAST],
        cwd=project["repo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a test run started in the background inherits SIGINT ignored, and
        # Python then installs no KeyboardInterrupt handler, so the signal would be lost.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    for line in process.stderr:  # wait until a bisect step is timing both trees
        if "building" in line:
            break
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert_left_as_it_was(project["repo"], project["after"])


@pytest.mark.slow
def test_check_without_a_stored_baseline_runs_ab_against_the_previous_commit(project, tmp_path):
    # On main the default base is HEAD~1, an unrelated change: the same networks, so it passes.
    result = tool(project["repo"], "check", "--storage", str(tmp_path / "none"), *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no significant regression" in result.stdout
    assert "no stored baseline for" in result.stderr
    assert f"base {project['slow']}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ab", "--base", "no-such-rev"], "revision 'no-such-rev' does not exist in {repo}"),
        (["bisect", "--good", "HEAD", "--bad", "nope"], "revision 'nope' does not exist in {repo}"),
    ],
)
def test_unusable_input_is_one_line_and_exit_2(project, args, message):
    result = tool(project["repo"], *args)
    message = message.format(repo=project["repo"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"unusable: {message}"
    assert_left_as_it_was(project["repo"], project["after"])


@pytest.mark.slow
def test_a_base_that_cannot_build_its_networks_is_unusable(project, tmp_path):
    repo = copy_project(tmp_path / "broken")
    (repo / "architectures" / "squeezenet.py").write_text("raise ImportError('broken tree')\n")
    broken = commit(repo, "break the networks")
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    result = tool(repo, "ab", "--base", broken, *FAST)
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("unusable: base (") and last.endswith("ImportError: broken tree")


def test_missing_baseline_names_the_recorded_machines_and_suggests_ab(project, tmp_path):
    stored = tmp_path / "baselines" / "0123456789ab" / "Linux-CPython-3.11-64bit"
    stored.mkdir(parents=True)
    info = {"machine_info": {"cpu": {"brand_raw": "Test CPU 9000", "count": 64}}}
    (stored / "0001_baseline.json").write_text(json.dumps(info))
    result = tool(project["repo"], "compare", "--storage", str(tmp_path / "baselines"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Test CPU 9000, 64 cores (0123456789ab)" in result.stderr
    assert "ab --base origin/main" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_verdict_needs_both_the_threshold_and_significance():
    import numpy as np

    from benchmarks.ab_stats import compare

    rng = np.random.default_rng(0)
    base = rng.normal(10.0, 0.3, 100)
    jitter = rng.normal(1.0, 0.01, 100)
    assert compare("x", base, base * 1.20 * jitter, 0.10, 0.01).verdict == "slower"
    assert compare("x", base, base / 1.20 * jitter, 0.10, 0.01).verdict == "faster"
    assert compare("x", base, base * 1.05 * jitter, 0.10, 0.01).verdict == "same"  # real, small
    few = compare("x", [10.0, 14.0, 9.0], [13.0, 9.5, 15.0], 0.10, 0.01)
    assert few.verdict == "unsure" and few.p_value >= 0.01  # beyond 10%, but 3 noisy rounds
    row = compare("x", base, base * 1.20 * jitter, 0.10, 0.01)
    assert row.ci_low < row.ratio < row.ci_high and abs(row.ratio - 1.20) < 0.01
    assert compare("x", base, base, 0.10, 0.01).verdict == "same"


def test_rounds_are_compared_in_pairs_so_load_between_rounds_cancels():
    import numpy as np

    from benchmarks.ab_stats import compare

    # Each round's load (1x to 3x) hits base and head alike; the head is 15% slower throughout.
    rng = np.random.default_rng(1)
    load = rng.uniform(1.0, 3.0, 100)
    base = 10.0 * load * rng.normal(1.0, 0.02, 100)
    head = 11.5 * load * rng.normal(1.0, 0.02, 100)
    row = compare("x", base, head, 0.10, 0.01)
    assert row.verdict == "slower" and 1.12 < row.ci_low < row.ratio < row.ci_high < 1.18
    # The same rounds unpaired (head shuffled) no longer show the slowdown reliably.
    assert compare("x", base, rng.permutation(head), 0.10, 0.01).ci_high - row.ci_high > 0.1


def test_select_takes_globs_and_substrings():
    from benchmarks.latency_cases import select_cases

    cases = [("vgg19", "cpu-eager"), ("vgg19", "cpu-onnxruntime"), ("mobilenet", "cpu-eager")]
    assert select_cases(cases, "vgg19") == cases[:2]
    assert select_cases(cases, "*-cpu-eager") == [cases[0], cases[2]]
    assert select_cases(cases, "mobilenet-cpu-eager, vgg19-cpu-onnx*") == [cases[1], cases[2]]
    assert select_cases(cases, None) == cases and select_cases(cases, "nope") == []
