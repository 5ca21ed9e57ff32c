"""Latency regression check: record a per-machine baseline, compare a new run against it.

    python benchmarks/latency_regression.py save              # tox -e bench-save
    python benchmarks/latency_regression.py compare           # tox -e bench
    python benchmarks/latency_regression.py compare --threshold 20 --raw

Both run ``tests/benchmarks`` with pytest-benchmark. Baselines live in pytest-benchmark's own
storage, one folder per machine (``benchmarks/baselines/<machine id>/``, the id from the CPU model,
core count and OS), and are committed for the machine kind CI uses.

``compare`` shows pytest-benchmark's own comparison table, then decides on the medians
*normalized by the calibration benchmark* of the same run (a fixed matrix multiply): a machine
that is uniformly 40% slower leaves every ratio unchanged, while one network getting 40% slower
does not. A benchmark fails when its normalized median exceeds the baseline's by more than
``--threshold`` percent (default 30). ``--raw`` instead fails on raw medians, through
pytest-benchmark's ``--benchmark-compare-fail=median:<threshold>%``. Exit status: 0 pass,
1 regression, 2 no baseline or unusable results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archbench.measure.sysinfo import machine_id  # noqa: E402

DEFAULT_STORAGE = REPO / "benchmarks" / "baselines"
SUITE = REPO / "tests" / "benchmarks"
CALIBRATION = "test_calibration"


def _pytest(args: argparse.Namespace, extra: list[str]) -> int:
    env = os.environ | {
        "ARCHBENCH_BENCH_ROUNDS": str(args.rounds),
        "ARCHBENCH_BENCH_WARMUP": str(args.warmup),
        "ARCHBENCH_BENCH_THREADS": str(args.threads),
    }
    command = [
        sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider",
        "--benchmark-only", "--benchmark-columns=min,median,mean,stddev,rounds",
        "--benchmark-sort=name", f"--benchmark-storage=file://{args.storage / machine_id()}",
        *(["-k", args.select] if args.select else []), *extra,
    ]  # fmt: skip
    return subprocess.call(command, env=env, cwd=REPO)


def _medians(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    return {bench["name"]: bench["stats"]["median"] for bench in data["benchmarks"]}


def latest_baseline(storage: Path) -> Path | None:
    folder = storage / machine_id()
    found = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    return found[-1] if found else None


def normalized_regressions(
    baseline: dict[str, float], current: dict[str, float], threshold_pct: float
) -> tuple[list[tuple[str, float, bool]], str | None]:
    """Per benchmark: (name, change in % of its calibration-normalized median, regressed?)."""
    calibration = next((n for n in baseline if n.startswith(CALIBRATION)), None)
    if calibration is None or calibration not in current:
        return [], "the calibration benchmark is missing from the baseline or the current run"
    rows = []
    for name in sorted(set(baseline) & set(current)):
        if name == calibration:
            continue
        before = baseline[name] / baseline[calibration]
        after = current[name] / current[calibration]
        change = 100.0 * (after / before - 1.0)
        rows.append((name, change, change > threshold_pct))
    if not rows:
        return [], "no benchmark in common with the baseline"
    return rows, None


def cmd_save(args: argparse.Namespace) -> int:
    code = _pytest(args, ["--benchmark-save=baseline"])
    if code == 0:
        print(f"saved baseline for machine {machine_id()} under {args.storage / machine_id()}")
    return code


def cmd_compare(args: argparse.Namespace) -> int:
    baseline = latest_baseline(args.storage)
    if baseline is None:
        print(
            f"no baseline for machine {machine_id()} under {args.storage}; "
            "record one with: python benchmarks/latency_regression.py save",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        current_path = Path(scratch) / "current.json"
        extra = [
            f"--benchmark-compare={baseline.stem.split('_')[0]}",
            f"--benchmark-json={current_path}",
        ]
        if args.raw:
            extra.append(f"--benchmark-compare-fail=median:{args.threshold:g}%")
        code = _pytest(args, extra)
        if args.raw or code != 0:
            return 1 if code == 1 else code
        rows, problem = normalized_regressions(
            _medians(baseline), _medians(current_path), args.threshold
        )
    if problem:
        print(f"cannot compare: {problem}", file=sys.stderr)
        return 2
    print(f"\nnormalized by calibration, against {baseline}:")
    for name, change, regressed in rows:
        print(f"  {'FAIL' if regressed else 'ok  '} {change:+7.1f}%  {name}")
    failed = [name for name, _, regressed in rows if regressed]
    if failed:
        print(f"{len(failed)} benchmark(s) slower than the baseline by more than "
              f"{args.threshold:g}% (normalized)")  # fmt: skip
        return 1
    print(f"all {len(rows)} benchmarks within {args.threshold:g}% of the baseline (normalized)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("save", "compare"))
    parser.add_argument("--storage", type=Path, default=DEFAULT_STORAGE)
    parser.add_argument("--threshold", type=float, default=30.0, help="percent (default 30)")
    parser.add_argument("--raw", action="store_true", help="fail on raw medians instead")
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds per benchmark")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--select", help="pytest -k expression (a subset of the benchmarks)")
    args = parser.parse_args()
    return cmd_save(args) if args.command == "save" else cmd_compare(args)


if __name__ == "__main__":
    sys.exit(main())
