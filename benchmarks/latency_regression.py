"""Latency regression checks: A/B against another revision, bisection, or a stored baseline.

    python benchmarks/latency_regression.py ab --base origin/main     # gate a pull request
    python benchmarks/latency_regression.py bisect --good v1 --bad HEAD --select vgg19
    python benchmarks/latency_regression.py check                     # tox -e bench
    python benchmarks/latency_regression.py save | compare            # one fixed machine

``ab`` times the base revision (checked out into a temporary git worktree) and the working tree
on this machine in the same run, interleaved, and fails a benchmark only when it is slower by
more than ``--threshold`` (default 10%) and a paired Wilcoxon signed-rank test finds the difference
significant (p < ``--alpha``, default 0.01); it prints a table and writes a JSON file. ``bisect``
runs ``git bisect`` with that comparison as its test. ``save``/``compare`` keep the stored
per-machine baseline (pytest-benchmark's storage, keyed on CPU model, cores and OS) for users who
run one fixed machine; ``check`` uses it when this machine has one, else runs ``ab``.
Exit status: 0 pass, 1 regression, 2 unusable (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ab_run  # noqa: E402
import latency_cases  # noqa: E402


def cpu_model() -> str:
    # Imported when needed: archbench.measure.sysinfo imports torch (the A/B driver avoids it).
    from archbench.measure.sysinfo import cpu_model

    return cpu_model()


def logical_cores() -> int:
    from archbench.measure.sysinfo import logical_cores

    return logical_cores()


def machine_id() -> str:
    from archbench.measure.sysinfo import machine_id

    return machine_id()


DEFAULT_STORAGE = REPO / "benchmarks" / "baselines"
SUITE = REPO / "tests" / "benchmarks"
RESULTS = REPO / ".benchmarks"


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


def latest_baseline(storage: Path) -> Path | None:
    folder = storage / machine_id()
    found = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    return found[-1] if found else None


def recorded_machines(storage: Path) -> list[str]:
    """'CPU model, N cores (id)' for every machine with a stored baseline."""
    machines = []
    for folder in sorted(p for p in storage.glob("*") if p.is_dir()):
        for path in sorted(folder.rglob("*.json"))[-1:]:
            cpu = json.loads(path.read_text()).get("machine_info", {}).get("cpu", {})
            model, cores = cpu.get("brand_raw", "unknown CPU"), cpu.get("count", "?")
            machines.append(f"{model}, {cores} cores ({folder.name})")
    return machines


def no_baseline_message(storage: Path) -> str:
    here = f"{cpu_model()}, {logical_cores()} cores ({machine_id()})"
    stored = "; ".join(recorded_machines(storage)) or "none"
    return (
        f"no baseline for this machine [{here}] under {storage}; stored baselines were recorded "
        f"on: {stored}. Compare against another revision on this machine instead: "
        "python benchmarks/latency_regression.py ab --base origin/main "
        "(or record a baseline here with: ... save)"
    )


def cmd_save(args: argparse.Namespace) -> int:
    code = _pytest(args, ["--benchmark-save=baseline"])
    if code == 0:
        print(f"saved baseline for {cpu_model()}, {logical_cores()} cores "
              f"under {args.storage / machine_id()}")  # fmt: skip
    return code


def cmd_compare(args: argparse.Namespace) -> int:
    baseline = latest_baseline(args.storage)
    if baseline is None:
        print(no_baseline_message(args.storage), file=sys.stderr)
        return 2
    threshold = 30.0 if args.threshold is None else args.threshold
    code = _pytest(args, [f"--benchmark-compare={baseline.stem.split('_')[0]}",
                          f"--benchmark-compare-fail=median:{threshold:g}%"])  # fmt: skip
    if code == 0:
        print(f"all benchmarks within {threshold:g}% of the baseline {baseline}")
    return 1 if code == 1 else code


def _progress(message: str) -> None:
    print(f"[ab] {message}", file=sys.stderr, flush=True)


def run_ab(args: argparse.Namespace, base_tree: Path, head_tree: Path) -> list:
    """Interleaved rounds of both trees, compared per benchmark."""
    names, samples, one_sided = ab_run.interleaved_rounds(
        base_tree, head_tree, lambda cases: latency_cases.select_cases(cases, args.select),
        args.rounds, args.inner, args.warmup, args.threads, _progress,
    )  # fmt: skip
    for name in one_sided:
        _progress(f"{name} exists in only one tree: not compared")
    import ab_stats

    threshold = (10.0 if args.threshold is None else args.threshold) / 100
    return [ab_stats.compare(n, samples[n][ab_run.BASE], samples[n][ab_run.HEAD], threshold,
                             args.alpha) for n in names], samples  # fmt: skip


def cmd_ab(args: argparse.Namespace) -> int:
    base_rev = args.base or ab_run.default_base(REPO)
    base_sha = ab_run.resolve(REPO, base_rev)
    ab_run.check_submodules(REPO)
    dirty = bool(ab_run.git(REPO, "status", "--porcelain", "--untracked-files=no"))
    head = ab_run.resolve(REPO, "HEAD")
    _progress(
        f"base {base_rev} ({base_sha[:10]}) against the working tree "
        f"({head[:10]}{' + changes' if dirty else ''}), {args.rounds} interleaved rounds"
    )
    started = time.monotonic()  # fmt: skip
    with ab_run.worktree(REPO, base_sha, "base") as base_tree:
        rows, samples = run_ab(args, base_tree, REPO)
    seconds = time.monotonic() - started
    import ab_stats

    print(ab_stats.format_table(rows))
    record = {
        "base": {"rev": base_rev, "sha": base_sha},
        "head": {"sha": head, "uncommitted_changes": dirty},
        "machine": {"cpu": cpu_model(), "cores": logical_cores()},
        "settings": {k: getattr(args, k) for k in ("rounds", "inner", "warmup", "threads",
                                                     "threshold", "alpha", "select")},
        "seconds": round(seconds, 1),
        "benchmarks": [row.as_dict() for row in rows],
        "samples_ns": samples,
    }  # fmt: skip
    path = args.json or RESULTS / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return _summarize(rows, seconds, path)


def _summarize(rows: list, seconds: float, path: Path) -> int:
    import ab_stats

    slower = [r.name for r in rows if r.verdict == ab_stats.SLOWER]
    faster = [r.name for r in rows if r.verdict == ab_stats.FASTER]
    if faster:
        print(f"faster: {', '.join(faster)}")
    print(f"{len(rows)} benchmark(s) in {seconds:.0f} s; results in {path}")
    if slower:
        print(f"REGRESSION: {', '.join(slower)}")
        return 1
    print("no significant regression")
    return 0


def cmd_bisect(args: argparse.Namespace) -> int:
    import ab_stats

    good = ab_run.resolve(REPO, args.good)
    bad = ab_run.resolve(REPO, args.bad)
    measured: dict[str, list] = {}

    def is_bad(tree: Path, sha: str) -> bool | None:
        subject = ab_run.git(REPO, "log", "-1", "--format=%h %s", sha)
        _progress(f"bisect: testing {subject}")
        try:
            rows, _ = run_ab(args, good_tree, tree)
        except ab_run.Unusable as error:
            _progress(f"bisect: skipping {sha[:10]}: {error}")
            return None
        measured[sha] = rows
        print(f"{subject}\n{ab_stats.format_table(rows)}\n", flush=True)
        return any(r.verdict == ab_stats.SLOWER for r in rows)

    with ab_run.worktree(REPO, good, "good") as good_tree:
        culprit = ab_run.bisect(REPO, good, bad, is_bad)
        if culprit not in measured:  # git named it without testing it (e.g. --bad itself)
            with ab_run.worktree(REPO, culprit, "culprit") as tree:
                is_bad(tree, culprit)
    slower = [r for r in measured.get(culprit, []) if r.verdict == ab_stats.SLOWER]
    subject = ab_run.git(REPO, "log", "-1", "--format=%H %s", culprit)
    if not slower:
        print(f"bisect ended at {subject}, but it is not significantly slower than --good "
              f"{args.good}: is --bad really a regression?", file=sys.stderr)  # fmt: skip
        return 2
    print(f"first bad commit: {subject}")
    for row in slower:
        print(f"  {row.name}: x{row.ratio:.2f} (95% CI {row.ci_low:.2f}-{row.ci_high:.2f}, "
              f"p {row.p_value:.1e}) against {args.good}")  # fmt: skip
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if latest_baseline(args.storage) is not None:
        return cmd_compare(args)
    _progress(f"no stored baseline for {cpu_model()}, {logical_cores()} cores: "
              "comparing against the base revision on this machine (ab)")  # fmt: skip
    args.rounds, args.warmup = args.ab_rounds, args.ab_warmup
    return cmd_ab(args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("ab", "bisect", "check", "save", "compare"))
    parser.add_argument("--base", help="ab: revision to compare against (default: merge base "
                        "with main, HEAD~1 on main)")  # fmt: skip
    parser.add_argument("--good", help="bisect: a revision without the regression")
    parser.add_argument("--bad", help="bisect: a revision with it")
    parser.add_argument("--threshold", type=float, help="percent (default 10 for ab/bisect, "
                        "30 for compare)")  # fmt: skip
    parser.add_argument("--alpha", type=float, default=0.01, help="significance (default 0.01)")
    parser.add_argument("--rounds", type=int, help="timed rounds per benchmark and side "
                        "(default 100 for ab/bisect, 60 for save/compare)")  # fmt: skip
    parser.add_argument("--inner", type=int, default=3, help="ab: forwards per round; the "
                        "round's time is their median (default 3)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=10, help="untimed forwards first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--select",
        help="ab/bisect: comma-separated globs on arch-backend "
        "names, e.g. 'vgg19-*,*-cpu-eager'; save/compare: a pytest -k expression",
    )
    parser.add_argument("--json", type=Path, help="ab: result file (default .benchmarks/ab-*.json)")
    parser.add_argument("--storage", type=Path, default=DEFAULT_STORAGE)
    args = parser.parse_args(argv)  # fmt: skip
    if args.command == "bisect" and not (args.good and args.bad):
        parser.error("bisect needs --good REV and --bad REV")
    for name in ("rounds", "inner", "warmup", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < (0 if name == "warmup" else 1):
            parser.error(f"--{name} must be positive")
    if args.rounds is not None and args.rounds < 2:
        parser.error("--rounds must be at least 2")
    default_rounds = 100 if args.command in ("ab", "bisect") else 60
    args.ab_rounds = args.rounds or 100
    args.ab_warmup = args.warmup
    args.rounds = args.rounds or default_rounds
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    commands = {"ab": cmd_ab, "bisect": cmd_bisect, "check": cmd_check, "save": cmd_save,
                "compare": cmd_compare}  # fmt: skip
    try:
        return commands[args.command](args)
    except ab_run.Unusable as error:
        print(f"unusable: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; worktrees and bisect state cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
