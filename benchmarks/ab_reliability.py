"""How reliable is ``latency_regression.py ab``? False alarms on unchanged code, detection rates.

    python benchmarks/ab_reliability.py                       # 20 runs each, 5 nets x 2 backends
    python benchmarks/ab_reliability.py --runs 10 --slowdowns 0.10,0.15 \
        --select squeezenet_dsc-cpu-eager,mobilenet-cpu-eager

Builds a throw-away git repository from a copy of this project, then runs ``ab`` ``--runs``
times on unchanged code (``--base HEAD``) and ``--runs`` times against each commit that slows
squeezenet_dsc's forward by one of ``--slowdowns`` (a busy wait of that fraction of the
forward's own CPU time, committed into ``architectures/``). Prints, per setting: how many runs
failed, how many named squeezenet_dsc-cpu-eager, any other benchmark flagged (a false alarm),
and the median wall time of one run. The helpers also build the repositories of the tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_PARTS = ("archbench", "architectures", "benchmarks", "tests/__init__.py",
                 "tests/benchmarks", "pyproject.toml")  # fmt: skip
SLOWED_CASE = "squeezenet_dsc-cpu-eager"
SLOWDOWN_PATCH = """

# Deliberate slowdown (a latency regression test): squeezenet_dsc's forward (a SqueezeNet built
# of FireDSC modules) busy-waits {fraction} of its own CPU time: that much more work, any load.
import time as _time  # noqa: E402

_squeezenet_forward = SqueezeNet.forward


def _slowed_forward(self, x):
    if not isinstance(self.features[2], FireDSC):
        return _squeezenet_forward(self, x)
    start = _time.thread_time()
    out = _squeezenet_forward(self, x)
    deadline = _time.thread_time() + {fraction} * (_time.thread_time() - start)
    while _time.thread_time() < deadline:
        pass
    return out


SqueezeNet.forward = _slowed_forward
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def copy_project(dest: Path) -> Path:
    """A git repository at ``dest`` holding this project's code, committed once on ``main``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".benchmarks")
    for part in PROJECT_PARTS:
        source, target = REPO / part, dest / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "config", "user.email", "bench@example.invalid")
    git(dest, "config", "user.name", "bench")
    commit(dest, "base: the project as it is")
    return dest


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def add_slowdown(repo: Path, fraction: float) -> str:
    """Commit a slowdown of squeezenet_dsc's forward by ``fraction`` (0.5: 50% slower)."""
    with open(repo / "architectures" / "squeezenet.py", "a") as source:
        source.write(SLOWDOWN_PATCH.format(fraction=fraction))
    return commit(repo, f"slow squeezenet_dsc down by {fraction:.0%}")


def run_ab(repo: Path, base: str, select: str | None, extra: list[str]) -> dict:
    out = Path(tempfile.mkdtemp()) / "ab.json"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "latency_regression.py"), "ab", "--base", base,
         "--json", str(out), *(["--select", select] if select else []), *extra],
        cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode not in (0, 1):
        raise SystemExit(f"ab failed with status {result.returncode}: {result.stderr.strip()}")
    rows = json.loads(out.read_text())["benchmarks"]
    shutil.rmtree(out.parent)
    return {
        "failed": result.returncode == 1,
        "slower": [r["name"] for r in rows if r["verdict"] == "slower"],
        "ratios": {r["name"]: round(r["ratio"], 3) for r in rows},
        "seconds": time.monotonic() - started,
    }


def measure(repo: Path, label: str, base: str, runs: int, select: str | None, extra) -> dict:
    results = []
    for i in range(runs):
        results.append(run_ab(repo, base, select, extra))
        r = results[-1]
        print(f"  {label} run {i + 1}/{runs}: {'FAIL' if r['failed'] else 'pass'} "
              f"{r['slower']} {r['seconds']:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    return {
        "setting": label,
        "runs": runs,
        "failed": sum(r["failed"] for r in results),
        "caught": sum(SLOWED_CASE in r["slower"] for r in results),
        "false_alarms": sum(bool(set(r["slower"]) - {SLOWED_CASE}) for r in results),
        "median_ratio": statistics.median(r["ratios"].get(SLOWED_CASE, 0) for r in results),
        "median_seconds": round(statistics.median(r["seconds"] for r in results), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--unchanged-runs", type=int, help="runs on unchanged code (default: --runs)"
    )
    parser.add_argument("--slowdowns", default="0.05,0.10,0.15", help="fractions, comma-separated")
    parser.add_argument("--select", help="as for ab (default: every benchmark)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args, extra = parser.parse_known_args()  # anything else goes to ab (e.g. --rounds 60)
    try:
        slowdowns = [float(x) for x in args.slowdowns.split(",")]
    except ValueError:
        print(f"--slowdowns must be fractions like 0.1,0.15, not {args.slowdowns!r}",
              file=sys.stderr)  # fmt: skip
        return 2
    unchanged_runs = args.runs if args.unchanged_runs is None else args.unchanged_runs
    if args.runs < 1 or unchanged_runs < 0 or any(f <= 0 for f in slowdowns):
        print("--runs and every slowdown must be positive", file=sys.stderr)
        return 2
    summary = []
    with tempfile.TemporaryDirectory(prefix="archbench-reliability-") as scratch:
        repo = copy_project(Path(scratch) / "repo")
        if unchanged_runs:
            summary.append(measure(repo, "unchanged", "HEAD", unchanged_runs, args.select, extra))
        base = git(repo, "rev-parse", "HEAD")
        for fraction in slowdowns:
            git(repo, "checkout", "-q", "-B", f"slow-{fraction}", base)
            add_slowdown(repo, fraction)
            summary.append(measure(repo, f"+{fraction:.0%}", base, args.runs, args.select, extra))
    print(
        "| setting | runs | failed | squeezenet_dsc-cpu-eager caught | other benchmarks "
        "flagged | median ratio | median s/run |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for s in summary:
        print(
            f"| {s['setting']} | {s['runs']} | {s['failed']} | {s['caught']} | "
            f"{s['false_alarms']} | {s['median_ratio']:.3f} | {s['median_seconds']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
