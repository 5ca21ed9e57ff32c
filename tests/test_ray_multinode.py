"""Suites on a real multi-node Ray cluster on this machine: a head with no CPUs for tasks and two
one-CPU worker nodes (``ray.cluster_utils.Cluster``: separate raylets, each its own node).

Where runs ran (``ray_node``), results equal to a local suite's, a node lost mid-run (resumed on
the other node, or recorded failed with ``--retries 0``), and a run that raises on a worker.
One cluster serves the module (starting it takes seconds); a test that removes a node leaves
the next one a fresh second worker.

A node is removed at a moment chosen by events, not sleeps: once some run has an epoch on disk,
the test holds the machine's per-node lock exclusively (as a profile does), so no epoch can
start anywhere; it removes the node of a run that is mid-run, waits until the suite has
recorded the loss and the dead worker has let go of the run directory, then lets go.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from archbench.cli import main
from archbench.errors import ArchbenchError
from archbench.locks import DirectoryLock
from archbench.measure import exclusive
from archbench.profile import ProfileConfig
from archbench.suite import SUITE_FILE, plan, run_suite
from archbench.suite.progress import LiveProgress
from archbench.train import rundir as runs
from tests.failing_digits_net import MESSAGE

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402 (after the skip when Ray is missing)

pytestmark = pytest.mark.slow  # each test trains several runs on a cluster (20-40 s on 2 cores)

TINY = f"{Path(__file__).with_name('tiny_digits_net.py')}:build"
BROKEN = f"{Path(__file__).with_name('failing_digits_net.py')}:build_broken"
# Four epochs: a node removed after epoch 1 leaves the run two or more epochs to resume.
EPOCHS = 4
SEEDS = (0, 1, 2, 3)
# One profiling thread, as in a one-CPU Ray task: one machine-peak probe serves every profile.
PROFILE = ProfileConfig(backends=("cpu-eager",), samples=5, warmup=1, batch_sizes=(1,),
                        cold_start=False, threads=1)  # fmt: skip
PROFILE_FLAGS = ["--backends", "cpu-eager", "--samples", "5", "--warmup", "1",
                 "--batch-sizes", "1", "--no-cold-start"]  # fmt: skip
WAIT_S = 120  # the longest any event may take on a busy 2-core machine before the test fails


def write_plan(path: Path, data_dir: Path, archs: list[str], seeds=SEEDS) -> Path:
    """A suite file: the archs on digits, one run per seed, one thread each (as a Ray task has)."""
    path.write_text(
        f'archs = {json.dumps(archs)}\ndatasets = ["digits"]\nseeds = {list(seeds)}\n'
        f'[set]\nmax_epochs = {EPOCHS}\nthreads = 1\ndata_dir = "{data_dir}"\n'
    )
    return path


def suite_entries(suite_dir: Path) -> dict:
    return json.loads((suite_dir / SUITE_FILE).read_text())["entries"]


def trained(run_dir: Path) -> dict:
    """What training produced: per-epoch losses and accuracies (full precision, from last.pt)
    and the test top-1; timings left out."""
    history = runs.load_checkpoint(run_dir / runs.LAST)["history"]
    figures = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
    result = json.loads((run_dir / runs.RESULT).read_text())
    return {"epochs": [{k: row[k] for k in figures} for row in history],
            "test_top1": result["test_top1"]}  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    try:
        yield cluster
    finally:
        ray.shutdown()  # the suites' driver connection, made by run_ray in this process
        cluster.shutdown()


@pytest.fixture
def two_workers(cluster: Cluster) -> Cluster:
    """The module's cluster with two alive one-CPU worker nodes (a test may have removed one)."""
    while len(cluster.worker_nodes) < 2:
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def local_results(tmp_path_factory, data_dir) -> dict[str, dict]:
    """The four-seed plan run by the local backend, in this process: what Ray must reproduce."""
    folder = tmp_path_factory.mktemp("local")
    name, entries = plan(file=write_plan(folder / "plan.toml", data_dir, [TINY]))
    outcome = run_suite(entries, folder / "suite", name=name, profile_config=PROFILE, quiet=True)
    assert outcome.exit_code == 0
    for entry in outcome.entries.values():  # ray_node is for Ray runs only
        assert "ray_node" not in runs.read_run(Path(entry.run_dir)).config
    return {key: trained(Path(e.run_dir)) for key, e in outcome.entries.items()}


def worker_ids(cluster: Cluster) -> set[str]:
    return {node.node_id for node in cluster.worker_nodes}


def test_a_suite_spreads_over_both_nodes_and_equals_a_local_suite(
    two_workers, local_results, data_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "250")  # table cells on one line each, to be searched
    plan_file = write_plan(tmp_path / "plan.toml", data_dir, [TINY])
    suite_dir = tmp_path / "suite"
    code = main(["suite", "--file", str(plan_file), "--backend", "ray",
                 "--ray-address", two_workers.address, "--runs-dir", str(suite_dir),
                 *PROFILE_FLAGS])  # fmt: skip
    shown = capsys.readouterr().out
    assert code == 0, shown
    entries = suite_entries(suite_dir)
    assert sorted(entries) == [f"build-digits-s{seed}" for seed in SEEDS]
    ran_on = set()
    for key, entry in entries.items():
        assert entry["status"] == "complete" and entry["attempts"] == 1
        config = runs.read_run(Path(entry["run_dir"])).config
        node = config["ray_node"]
        assert set(node) == {"id", "hostname"} and node["hostname"]
        assert node["id"] in worker_ids(two_workers)  # never the head: it has no CPUs for tasks
        assert entry["attempt_log"] == [
            {"attempt": 1, "node": node, "status": "complete", "reason": None}
        ]
        ran_on.add(node["id"])
        # CPU training is deterministic: one thread each, the same plan and seeds give the
        # same per-epoch losses and test top-1, bit for bit, in a Ray worker and here.
        assert trained(Path(entry["run_dir"])) == local_results[key], key
    assert ran_on == worker_ids(two_workers), "both worker nodes ran something"
    for node_id in ran_on:  # the head's live view and summary name each run's node
        assert f"(node {node_id[:8]})" in shown


class NodeLoss(threading.Thread):
    """Removes the node of a run that is mid-run (see the module docstring); the test's eyes."""

    def __init__(self, cluster: Cluster, suite_dir: Path, head_lines: dict) -> None:
        super().__init__(daemon=True)
        self.cluster, self.suite_dir, self.head_lines = cluster, suite_dir, head_lines
        self.victim: dict = {}  # key, run_dir, node; epochs_done once the node is gone
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._lose_a_node()
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def _lose_a_node(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if any(epochs_done(p.parent) for p in self.suite_dir.glob(f"*/{runs.CONFIG}")):
                with exclusive.measuring({}):  # from here no epoch starts on this machine
                    self.victim = self._a_mid_run_run() or {}
                    if self.victim:
                        self._remove_its_node(deadline)
                        return
            time.sleep(0.02)
        raise TimeoutError("no run was mid-run within the wait")

    def _a_mid_run_run(self) -> dict | None:
        """A run with an epoch behind it and two ahead: its key, directory and node.

        Two ahead: the epoch that just left the lock may still be writing its records.
        """
        for config_path in sorted(self.suite_dir.glob(f"*/{runs.CONFIG}")):
            try:
                info = runs.read_run(config_path.parent)
            except ArchbenchError:  # a run just starting: no result.json yet
                continue
            done = epochs_done(info.path)
            if info.status == "running" and 1 <= done <= EPOCHS - 2:
                return {"key": info.config["suite_entry"], "run_dir": info.path,
                        "node": info.config["ray_node"]}  # fmt: skip
        return None

    def _remove_its_node(self, deadline: float) -> None:
        key, run_dir, node_id = (
            self.victim["key"],
            self.victim["run_dir"],
            self.victim["node"]["id"],
        )
        wait_for(lambda: shown_training_on(self.head_lines, key, node_id), deadline, "the head")
        node = next(n for n in self.cluster.worker_nodes if n.node_id == node_id)
        self.cluster.remove_node(node, allow_graceful=False)  # as a crashed machine
        wait_for(lambda: loss_recorded(self.suite_dir, key), deadline, "the loss recorded")
        wait_for(lambda: released(run_dir), deadline, "the dead worker gone")
        # What the dead worker left: the last checkpoint's epoch, which the retry resumes after.
        self.victim["epochs_done"] = runs.load_checkpoint(run_dir / runs.LAST)["epoch"]


def shown_training_on(head_lines: dict, key: str, node_id: str) -> bool:
    """Whether the head's live view has shown the run training on that node."""
    return any(
        line.startswith("training epoch") and f"(node {node_id[:8]})" in line
        for line in list(head_lines.get(key, []))
    )


def epochs_done(run_dir: Path) -> int:
    metrics = run_dir / runs.METRICS
    return len(metrics.read_text().splitlines()) - 1 if metrics.is_file() else 0


def loss_recorded(suite_dir: Path, key: str) -> bool:
    try:
        log = suite_entries(suite_dir)[key]["attempt_log"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(log) and log[0]["status"] == "failed"


def released(run_dir: Path) -> bool:
    """True once no process holds the run directory (the killed worker's lock is gone)."""
    try:
        DirectoryLock(run_dir, "test: is the run directory free").acquire().release()
    except ArchbenchError:
        return False
    return True


def wait_for(condition, deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited too long for {what}")
        time.sleep(0.05)


def run_losing_a_node(cluster: Cluster, suite_dir: Path, entries, retries: int, head_lines,
                      console: Console | None = None):  # fmt: skip
    loss = NodeLoss(cluster, suite_dir, head_lines)
    loss.start()
    outcome = run_suite(entries, suite_dir, name="plan", backend="ray",
                        ray_address=cluster.address, retries=retries, profile_config=PROFILE,
                        console=console, quiet=console is None)  # fmt: skip
    loss.join(WAIT_S)
    if loss.error is not None:
        raise loss.error
    assert loss.victim, "no node was removed"
    return outcome, loss.victim


@pytest.fixture
def head_lines(monkeypatch) -> dict[str, list[str]]:
    """Every line the head's live view showed, per run (recorded, then shown as usual)."""
    shown: dict[str, list[str]] = {}
    show = LiveProgress.set

    def recording(self, key: str, line: str) -> None:
        shown.setdefault(key, []).append(line)
        show(self, key, line)

    monkeypatch.setattr(LiveProgress, "set", recording)
    return shown


def two_runs(tmp_path: Path, data_dir: Path):
    _, entries = plan(file=write_plan(tmp_path / "plan.toml", data_dir, [TINY], seeds=(0, 1)))
    return entries


# Before the tests that remove a node: it runs on the cluster as started (adding a node back
# takes seconds).
def test_a_run_that_raises_on_a_worker_is_one_line_and_its_traceback_is_kept(
    two_workers, data_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "250")  # table cells on one line each, to be searched
    plan_file = write_plan(tmp_path / "plan.toml", data_dir, [TINY, BROKEN], seeds=(0,))
    suite_dir = tmp_path / "suite"
    code = main(["suite", "--file", str(plan_file), "--backend", "ray", "--retries", "0",
                 "--ray-address", two_workers.address, "--runs-dir", str(suite_dir),
                 *PROFILE_FLAGS])  # fmt: skip
    shown = capsys.readouterr()
    assert code == 1
    entries = suite_entries(suite_dir)
    assert entries["build-digits-s0"]["status"] == "complete"
    broken = entries["build_broken-digits-s0"]
    assert broken["status"] == "failed" and broken["error"] == f"RuntimeError: {MESSAGE}"
    (attempt,) = broken["attempt_log"]
    assert attempt["reason"] == broken["error"] and attempt["node"]["id"] in worker_ids(two_workers)
    # The whole traceback is in the run's log, none of it on the user's screen.
    log = (Path(broken["run_dir"]) / runs.LOG).read_text()
    assert "Traceback (most recent call last)" in log and "raise RuntimeError(MESSAGE)" in log
    assert MESSAGE in shown.out and "Traceback" not in shown.out + shown.err


def test_a_run_whose_node_is_lost_resumes_on_the_other_node(
    two_workers, local_results, data_dir, tmp_path, head_lines
):
    survivors = worker_ids(two_workers)
    # wide enough that no summary cell folds, however long tmp_path is (xdist adds popen-gwN)
    entries, screen = two_runs(tmp_path, data_dir), Console(record=True, width=1000)
    outcome, victim = run_losing_a_node(two_workers, tmp_path / "suite", entries, 1, head_lines,
                                        screen)  # fmt: skip
    survivors -= {victim["node"]["id"]}
    assert outcome.exit_code == 0
    entry = outcome.entries[victim["key"]]
    assert entry.status == "complete" and entry.attempts == 2
    lost, resumed = entry.attempt_log
    assert lost["node"] == victim["node"] and lost["status"] == "failed"
    assert lost["reason"] == (f"Ray node {victim['node']['id'][:8]} "
                              f"({victim['node']['hostname']}) was lost while running it "
                              "(NodeDiedError)")  # fmt: skip
    assert "node ID: " + victim["node"]["id"] in lost["detail"]  # Ray's own words, kept
    assert resumed["status"] == "complete" and resumed["node"]["id"] in survivors
    # The same run directory, continued from its last checkpoint on the surviving node.
    run_dir = Path(entry.run_dir)
    assert run_dir == victim["run_dir"]
    assert runs.read_run(run_dir).config["ray_node"] == resumed["node"]
    log = (run_dir / runs.LOG).read_text()
    assert 1 <= victim["epochs_done"] < EPOCHS
    assert f"resuming {run_dir} after epoch {victim['epochs_done']}" in log
    # No epoch trained twice, none lost: the epochs and results of an uninterrupted run.
    assert [row["epoch"] for row in trained(run_dir)["epochs"]] == list(range(1, EPOCHS + 1))
    assert trained(run_dir) == local_results[victim["key"]]
    other = next(e for k, e in outcome.entries.items() if k != victim["key"])
    assert other.status == "complete" and other.attempts == 1
    # The head showed where the run trained (the loss waited for it), never the dead node for
    # the retry, and where the run ended.
    lines = head_lines[victim["key"]]
    lost_node, new_node = (f"(node {node['id'][:8]})" for node in (lost["node"], resumed["node"]))
    assert any(line.startswith("training epoch") and lost_node in line for line in lines)
    assert not any(line.startswith("retry 1:") and lost_node in line for line in lines)
    assert lines[-1] == f"[green]done[/] on {resumed['node']['hostname']} {new_node}"
    assert f"(retried after: {lost['reason']})" in screen.export_text()  # the summary says why


def test_with_no_retries_a_lost_node_fails_its_run_and_a_rerun_resumes_it(
    two_workers, local_results, data_dir, tmp_path, head_lines
):
    entries = two_runs(tmp_path, data_dir)
    outcome, victim = run_losing_a_node(two_workers, tmp_path / "suite", entries, 0, head_lines)
    assert outcome.exit_code == 1 and outcome.report is not None
    entry = outcome.entries[victim["key"]]
    assert entry.status == "failed" and entry.attempts == 1
    assert entry.error.startswith(f"Ray node {victim['node']['id'][:8]} (")
    assert entry.error.endswith("was lost while running it (NodeDiedError)")
    assert entry.run_dir == str(victim["run_dir"])
    other = next(e for k, e in outcome.entries.items() if k != victim["key"])
    assert other.status == "complete"

    # The same command again: the failed run gets a new attempt, which resumes, not restarts.
    rerun = run_suite(entries, tmp_path / "suite", name="plan", backend="ray",
                      ray_address=two_workers.address, retries=0, profile_config=PROFILE,
                      quiet=True)  # fmt: skip
    assert rerun.exit_code == 0
    entry = rerun.entries[victim["key"]]
    assert [a["status"] for a in entry.attempt_log] == ["failed", "complete"]
    assert entry.run_dir == str(victim["run_dir"])
    assert trained(victim["run_dir"]) == local_results[victim["key"]]
