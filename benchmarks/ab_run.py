"""A/B latency runs on one machine in one run: git worktrees, two workers, interleaved rounds.

The base revision is checked out into a temporary ``git worktree``; one worker process imports
the networks from it and another from the tree under test, and the driver asks them for one
round at a time, alternating which goes first (ABBA…), so slow phases of a busy machine hit both
sides alike. ``bisect`` runs ``git bisect`` in a worktree of its own with this comparison as its
test. Every worktree, worker and bisect session is removed again on any exit, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "ab_worker.py"
BASE, HEAD = "base", "head"


class Unusable(Exception):
    """The comparison cannot be made (bad revision, dirty submodule, build failure): exit 2."""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise Unusable(f"git {' '.join(args)}: {lines[-1] if lines else 'failed'}")
    return result.stdout.strip()


def resolve(repo: Path, rev: str) -> str:
    """The full commit id of ``rev``, or :class:`Unusable` naming it."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except Unusable:
        raise Unusable(f"revision {rev!r} does not exist in {repo}") from None


def default_base(repo: Path) -> str:
    """The merge base with ``main`` (or ``origin/main``); ``HEAD~1`` when HEAD is on main."""
    head = resolve(repo, "HEAD")
    for main in ("main", "origin/main"):
        try:
            base = git(repo, "merge-base", "HEAD", main)
        except Unusable:
            continue
        return base if base != head else resolve(repo, "HEAD~1")
    raise Unusable("no --base given and no 'main' or 'origin/main' branch to take it from")


def check_submodules(tree: Path) -> None:
    """Refuse a tree whose submodules are not checked out at their recorded commits."""
    if not (tree / ".gitmodules").exists():
        return
    for line in git(tree, "submodule", "status", "--recursive").splitlines():
        if line[:1] in "+-U":
            state = {"+": "dirty", "-": "not initialized", "U": "conflicted"}[line[0]]
            raise Unusable(f"submodule {line[1:].split()[1]} in {tree} is {state}")


@contextlib.contextmanager
def worktree(repo: Path, sha: str, label: str) -> Iterator[Path]:
    """``sha`` checked out (detached) in a temporary worktree, removed on exit."""
    parent = Path(tempfile.mkdtemp(prefix=f"archbench-{label}-"))
    tree = parent / "tree"
    try:
        git(repo, "worktree", "add", "--detach", "--force", str(tree), sha)
        if (tree / ".gitmodules").exists():
            git(tree, "submodule", "update", "--init", "--recursive")
        check_submodules(tree)
        yield tree
    finally:
        with _no_interrupts():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo,
                           capture_output=True)  # fmt: skip
            subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
            shutil.rmtree(parent, ignore_errors=True)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Cleanup that Ctrl-C must not cut short: a Ctrl-C meanwhile is held, then raised once the
    cleanup is done (ignoring it lost it: the command then ran to the end and exited 0)."""
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


class Worker:
    """A worker process timing forwards of the networks in ``tree``."""

    def __init__(self, side: str, tree: Path, threads: int):
        self.side, self.tree = side, tree
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in close())
        self.scratch = Path(tempfile.mkdtemp(prefix=f"archbench-ab-{side}-"))
        thread_env = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), f"--threads={threads}", f"--scratch={self.scratch}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=os.environ | thread_env | {"PYTHONPATH": str(tree)}, cwd=tree,
            start_new_session=True,  # Ctrl-C reaches the driver only, which stops us cleanly
        )  # fmt: skip

    def receive(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                message = json.loads(line)
                if "error" in message:
                    raise Unusable(f"{self.side} ({self.tree}): {message['error']}")
                return message
        self.log.seek(0)
        lines = [x for x in self.log.read().strip().splitlines() if x.strip()]
        raise Unusable(f"{self.side} worker died: {lines[-1] if lines else 'no output'}")

    def request(self, message: dict) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # end of requests: the worker returns
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def interleaved_rounds(
    base_tree: Path,
    head_tree: Path,
    select: Callable[[list], list],
    rounds: int,
    inner: int,
    warmup: int,
    threads: int,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[list[str], dict[str, dict[str, list[float]]], list[str]]:
    """Time the selected cases of both trees in alternating rounds.

    Returns the case names, per case ``{"base": [ns per round], "head": [...]}``, and the names
    of selected cases present in only one tree (not compared).
    """
    import latency_cases

    workers = {}
    try:
        workers = {BASE: Worker(BASE, base_tree, threads), HEAD: Worker(HEAD, head_tree, threads)}
        available = {}
        for side, worker in workers.items():
            hello = worker.receive()
            if not Path(hello["source"]).resolve().is_relative_to(worker.tree.resolve()):
                raise Unusable(f"{side} worker imported the networks from {hello['source']}")
            available[side] = [tuple(case) for case in hello["cases"]]
        both = [c for c in available[HEAD] if c in set(available[BASE])]
        cases = select(both)
        one_sided = [latency_cases.case_name(*c) for c in select(available[HEAD] + available[BASE])
                     if c not in both]  # fmt: skip
        if not cases:
            raise Unusable("the selection matches no benchmark present in both trees")
        names = [latency_cases.case_name(*c) for c in cases]
        progress(f"building {len(cases)} benchmark(s) in both trees")
        for worker in workers.values():
            worker.process.stdin.write(json.dumps({"build": cases, "warmup": warmup}) + "\n")
            worker.process.stdin.flush()
        for worker in workers.values():
            worker.receive()
        samples = {name: {BASE: [], HEAD: []} for name in names}
        for r in range(rounds):
            for i, name in enumerate(names):
                order = (BASE, HEAD) if (r + i) % 2 == 0 else (HEAD, BASE)
                for side in order:
                    reply = workers[side].request({"run": i, "inner": inner})
                    samples[name][side].append(reply["ns"])
            if (r + 1) % max(1, rounds // 5) == 0:
                progress(f"round {r + 1}/{rounds}")
        return names, samples, one_sided
    finally:
        for worker in workers.values():
            worker.close()


def bisect(repo: Path, good: str, bad: str, is_bad: Callable[[Path, str], bool | None]) -> str:
    """Run ``git bisect`` between two commits in a worktree of its own; return the first bad one.

    ``is_bad(tree, sha)`` is the test of each candidate: True bad, False good, None skip.
    The repository is left as it was: the bisect session is reset and the worktree removed.
    """
    with worktree(repo, bad, "bisect") as tree:
        started = False
        try:
            output = git(tree, "bisect", "start", bad, good)
            started = True
            while "is the first bad commit" not in output:
                if "only 'skip'ped commits left" in output:
                    raise Unusable("every candidate commit was unusable; cannot name one")
                sha = git(tree, "rev-parse", "HEAD")
                verdict = is_bad(tree, sha)
                step = "skip" if verdict is None else ("bad" if verdict else "good")
                output = git(tree, "bisect", step)
            return output.split()[0]
        finally:
            if started:
                with _no_interrupts():
                    subprocess.run(["git", "bisect", "reset"], cwd=tree, capture_output=True)
