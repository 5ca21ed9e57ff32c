"""Study suites: a grid of (architecture, dataset, settings) runs, resumable, local or on Ray.

A suite directory holds its plan and progress in ``suite.json`` and one run directory per run.
Running the same command again skips complete runs, resumes interrupted ones from ``last.pt``,
profiles trained-but-unprofiled ones, and retries failed ones up to ``retries`` times; it ends
with a summary and a report over the suite's runs.

Every job on a node trains under :func:`archbench.exclusive.computing` and profiles under
:func:`archbench.exclusive.measuring`, so on Ray, with several jobs per node, a profile never
overlaps another job's training or profile; ``profile.json`` records when it held the node.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from architectures import list_archs

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from . import files, runs
from .errors import ArchbenchError
from .profile import ProfileConfig, profile_run
from .train import EXIT_INTERRUPTED, TrainConfig, train_run

SUITE_FILE = "suite.json"
BACKENDS = ("local", "ray")
STUDY_ARCHS = ("squeezenet_dsc", "squeezenet", "mobilenet", "alexnet", "vgg19")

# Presets are data: networks x datasets, and settings applied to every run.
PRESETS: dict[str, dict[str, Any]] = {
    "souza2020": {
        "archs": STUDY_ARCHS,
        "datasets": ("cifar10", "cifar100"),
        "set": {},  # the trainer's defaults are the study's reference code
    },
}
# Settings a suite decides itself, never through --set.
RESERVED = {"arch", "dataset", "runs_dir"}


@dataclass(frozen=True)
class SuiteEntry:
    """One planned run."""

    arch: str
    dataset: str
    overrides: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        key = f"{runs.slug(self.arch)}-{runs.slug(self.dataset)}"
        # Runs that differ only in seed are one group; each seed is its own run.
        return f"{key}-s{self.overrides['seed']}" if self.seeded else key

    @property
    def seeded(self) -> bool:
        return bool(self.overrides.get("_seeded"))

    def train_config(self, suite_dir: Path) -> TrainConfig:
        settings = {k: v for k, v in self.overrides.items() if not k.startswith("_")}
        return TrainConfig(
            arch=self.arch, dataset=self.dataset, runs_dir=str(suite_dir), **settings
        )


@dataclass
class EntryState:
    """Where one planned run stands; saved in ``suite.json``."""

    key: str
    arch: str
    dataset: str
    overrides: dict
    status: str = "queued"  # queued | complete | failed | interrupted
    run_dir: str | None = None
    attempts: int = 0
    error: str | None = None


# ------------------------------------------------------------------------------ planning


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["max_epochs=5", "lr=0.001"]`` -> typed TrainConfig overrides, each one checked."""
    known = {f.name: f for f in fields(TrainConfig)}
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ArchbenchError(f"--set takes key=value, got {item!r}")
        if key == "seeds":  # expanded by plan(): one run per seed
            overrides[key] = _seeds(text)
            continue
        if key in RESERVED:
            raise ArchbenchError(
                f"--set {key}=... is decided by the suite (use --archs/--datasets)"
            )
        if key not in known:
            close = fnmatch.filter(known, f"*{key}*")
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ArchbenchError(f"--set: unknown setting {key!r}{hint}")
        overrides[key] = _coerce(key, text.strip(), known[key].type)
    return overrides


def _coerce(key: str, text: str, annotation: str) -> Any:
    """Parse ``text`` as the type TrainConfig declares for ``key`` (``"int | None"`` etc.)."""
    kinds = {part.strip() for part in str(annotation).split("|")}
    if text == "null" and "None" in kinds:  # "none" is a value (e.g. augment=none)
        return None
    if "bool" in kinds:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ArchbenchError(f"--set {key} takes true or false, got {text!r}")
    for kind, parse in (("int", int), ("float", float)):
        if kind in kinds:
            try:
                return parse(text)
            except ValueError:
                raise ArchbenchError(f"--set {key} takes a {kind}, got {text!r}") from None
    return text


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _select(names: Sequence[str], patterns: str | None) -> list[str]:
    if not patterns:
        return list(names)
    wanted = _split(patterns)
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in wanted)]


def plan(
    *,
    preset: str | None = None,
    file: Path | None = None,
    archs: str | None = None,
    datasets: str | None = None,
    overrides: dict | None = None,
) -> tuple[str, list[SuiteEntry]]:
    """The suite's entries (and a name for it) from a preset or a TOML file, then filtered."""
    if (preset is None) == (file is None):
        raise ArchbenchError("give --preset NAME or --file SUITE.toml (one of them)")
    if preset is not None:
        if preset not in PRESETS:
            raise ArchbenchError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        spec, name = PRESETS[preset], preset
    else:
        spec, name = _read_suite_file(Path(file)), Path(file).stem
    base = dict(spec.get("set", {}))
    base_seeds = _seeds(spec.get("seeds"))
    # --datasets replaces the plan's datasets (any dataset: digits gives a quick offline pass).
    wanted = _split(datasets) if datasets else _listed(spec.get("datasets", ()), "datasets")
    entries = [
        entry
        for dataset in wanted
        for arch in _expand_archs(spec.get("archs", ()))
        for entry in _seeded(SuiteEntry(arch, dataset, base), base_seeds)
    ]
    for extra in spec.get("runs", ()):
        if not isinstance(extra, dict) or "arch" not in extra:
            raise ArchbenchError(f"every [[runs]] entry needs an arch: {extra}")
        # An entry without a dataset runs on each of the plan's datasets.
        extra_datasets = [extra["dataset"]] if "dataset" in extra else wanted
        for dataset in extra_datasets:
            if datasets and dataset not in wanted:
                continue
            entry = SuiteEntry(extra["arch"], dataset, base | dict(extra.get("set", {})))
            entries += _seeded(entry, _seeds(extra.get("seeds")) or base_seeds)
    if archs:
        entries = [e for e in entries if _select([e.arch], archs)]
    if overrides:
        overrides = dict(overrides)
        override_seeds = _seeds(overrides.pop("seeds", None))
        entries = [replace(e, overrides=e.overrides | overrides) for e in entries]
        if override_seeds:  # --set seeds=... replaces the plan's seeds
            unique = {_unseeded(e).key: _unseeded(e) for e in entries}
            entries = [s for e in unique.values() for s in _seeded(e, override_seeds)]
    if not entries:
        raise ArchbenchError("the suite is empty after --archs/--datasets filtering")
    keys = [e.key for e in entries]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ArchbenchError(f"the suite plans the same run twice: {', '.join(duplicates)}")
    return name, entries


def _seeds(value) -> list[int]:
    """A plan's ``seeds``: a list of ints or a comma-separated string ("0,1,2")."""
    if value is None:
        return []
    if isinstance(value, str):
        value = _split(value)
    if isinstance(value, int):
        value = [value]
    try:
        seeds = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ArchbenchError(f"seeds must be integers, got {value!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ArchbenchError(f"seeds repeat a value: {value!r}")
    return seeds


def _seeded(entry: SuiteEntry, seeds: list[int]) -> list[SuiteEntry]:
    """One entry per seed (keys get ``-sN``); no seeds list keeps the entry as it is."""
    if not seeds:
        return [entry]
    return [replace(entry, overrides=entry.overrides | {"seed": s, "_seeded": True}) for s in seeds]


def _unseeded(entry: SuiteEntry) -> SuiteEntry:
    if not entry.seeded:
        return entry
    overrides = {k: v for k, v in entry.overrides.items() if k not in ("seed", "_seeded")}
    return replace(entry, overrides=overrides)


def _listed(values, what: str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not all(isinstance(v, str) for v in values):
        raise ArchbenchError(f"suite {what} must be names, got {values!r}")
    return list(values)


def _expand_archs(patterns) -> list[str]:
    names = []
    for pattern in _listed(patterns, "archs"):
        matched = list_archs(pattern) if any(c in pattern for c in "*?[") else [pattern]
        names += [n for n in matched if n not in names]
    return names


def _read_suite_file(path: Path) -> dict:
    if not path.is_file():
        raise ArchbenchError(f"suite file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ArchbenchError(
                    f"{path} is YAML: pip install pyyaml, or write it as TOML"
                ) from None
            spec = yaml.safe_load(text)
        else:
            spec = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as error:
        raise ArchbenchError(f"suite file {path} is not valid: {error}") from None
    if not isinstance(spec, dict):
        raise ArchbenchError(f"suite file {path} must be a table of archs, datasets, set, runs")
    unknown = set(spec) - {"archs", "datasets", "set", "runs", "seeds"}
    if unknown:
        raise ArchbenchError(f"suite file {path}: unknown keys {', '.join(sorted(unknown))}")
    return spec


# ------------------------------------------------------------------------------ state


class SuiteState:
    """``suite.json``: the plan and where each run stands, rewritten atomically on each change."""

    def __init__(self, suite_dir: Path, name: str, entries: Sequence[SuiteEntry]) -> None:
        self.suite_dir, self.name = suite_dir, name
        self.path = suite_dir / SUITE_FILE
        planned = {e.key: EntryState(e.key, e.arch, e.dataset, dict(e.overrides)) for e in entries}
        if self.path.is_file():
            saved = files.read_json(self.path)
            saved_plan = {
                k: (v["arch"], v["dataset"], v["overrides"]) for k, v in saved["entries"].items()
            }
            new_plan = {k: (v.arch, v.dataset, v.overrides) for k, v in planned.items()}
            if saved_plan != new_plan:
                raise ArchbenchError(
                    f"{suite_dir} holds a suite with a different plan ({len(saved_plan)} runs); "
                    "rerun its own command or choose another --runs-dir"
                )
            planned = {k: EntryState(**v) for k, v in saved["entries"].items()}
        self.entries = planned
        self.save()

    def save(self) -> None:
        files.write_json(
            self.path,
            {"name": self.name, "entries": {k: asdict(v) for k, v in self.entries.items()}},
        )


# ------------------------------------------------------------------------------ one job


def run_entry(
    entry: dict,
    suite_dir: str,
    profile_config: ProfileConfig,
    on_status: Callable[[str], None] | None = None,
) -> dict:
    """Bring one planned run to complete-and-profiled; runs in this process or a Ray worker.

    Returns the entry's new state fields. Never raises for a failing run: its reason is data.
    """
    say = on_status or (lambda status: None)
    suite = Path(suite_dir)
    state = dict(entry)
    try:
        run_dir = _unfinished_run(suite, state)
        if run_dir is not None and runs.read_run(run_dir).status == "complete":
            outcome_status = "complete"
        else:
            train = SuiteEntry(state["arch"], state["dataset"], state["overrides"])
            config = train.train_config(suite)

            def epoch_done(row: dict) -> None:
                say(f"training epoch {row['epoch']}")

            say("training")
            outcome = train_run(
                config,
                console=Console(quiet=True),
                quiet=True,
                resume=run_dir,
                on_epoch_end=epoch_done,
            )
            run_dir, outcome_status = outcome.run_dir, outcome.status
        state["run_dir"] = str(run_dir)
        if outcome_status != "complete":
            state.update(status=outcome_status, error=None)
            return state
        if not (Path(run_dir) / runs.PROFILE).is_file():
            say("profiling")
            profile_run(Path(run_dir), profile_config, console=Console(quiet=True), quiet=True)
        state.update(status="complete", error=None)
    except KeyboardInterrupt:
        state.update(status="interrupted")
    except Exception as error:  # the run fails, the suite goes on
        state.update(status="failed", error=f"{type(error).__name__}: {error}")
    return state


def _unfinished_run(suite: Path, state: dict) -> Path | None:
    """The run directory to continue: the recorded one, or one a killed job left unrecorded."""
    if state.get("run_dir") and state.get("status") != "failed":
        path = Path(state["run_dir"])
        if (path / runs.CONFIG).is_file() and (path / runs.LAST).is_file():
            return path
    if state.get("status") == "failed":
        return None
    for config_path in sorted(suite.glob(f"*/{runs.CONFIG}"), reverse=True):
        try:
            info = runs.read_run(config_path.parent)
        except ArchbenchError:
            continue
        train = info.config["train"]
        seed = state["overrides"].get("seed", train.get("seed"))
        if (
            train["arch"] == state["arch"]
            and train["dataset"] == state["dataset"]
            and train.get("seed") == seed
            and info.status in ("running", "interrupted")
            and (info.path / runs.LAST).is_file()
        ):
            return info.path
    return None


# ------------------------------------------------------------------------------ the suite


@dataclass
class SuiteOutcome:
    suite_dir: Path
    entries: dict[str, EntryState]
    interrupted: bool
    report: Path | None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 0 if all(e.status == "complete" for e in self.entries.values()) else 1


class _Progress:
    """One live line per run (queued / training epoch k / profiling / done / failed)."""

    def __init__(self, state: SuiteState, console: Console, quiet: bool) -> None:
        self.state, self.console, self.quiet = state, console, quiet
        self.lines = {key: _describe(e) for key, e in state.entries.items()}
        self.live = Live(self._table(), console=console, transient=False, auto_refresh=False)

    def _table(self) -> Table:
        table = Table(title=f"suite {self.state.name}: {self.state.suite_dir}")
        table.add_column("run")
        table.add_column("status")
        for key, line in self.lines.items():
            table.add_row(key, line)
        return table

    def set(self, key: str, line: str) -> None:
        self.lines[key] = line
        if not self.quiet:
            self.live.update(self._table(), refresh=True)

    def __enter__(self):
        if not self.quiet:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if not self.quiet:
            self.live.__exit__(*exc)
            self.console.print()


def _describe(entry: EntryState) -> str:
    if entry.status == "complete":
        return "[green]done[/]"
    if entry.status == "failed":
        return f"[red]failed[/] after {entry.attempts} attempt(s): {entry.error}"
    if entry.status == "interrupted":
        return "interrupted (will resume)"
    return "queued"


def run_suite(
    entries: Sequence[SuiteEntry],
    suite_dir: Path,
    *,
    name: str,
    backend: str = "local",
    retries: int = 1,
    profile_config: ProfileConfig = ProfileConfig(),  # noqa: B008 (frozen)
    console: Console | None = None,
    quiet: bool = False,
    ray_address: str | None = None,
    gpus_per_run: float = 0.0,
    cpus_per_run: float = 1.0,
) -> SuiteOutcome:
    """Bring every entry to complete (or failed after ``retries`` retries), then report."""
    console = console or Console()
    if backend not in BACKENDS:
        raise ArchbenchError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if retries < 0:
        raise ArchbenchError(f"--retries must be >= 0, got {retries}")
    suite_dir = runs.ensure_writable(Path(suite_dir))
    state = SuiteState(suite_dir, name, entries)
    for entry in state.entries.values():
        if entry.status == "failed":  # a new command gives failed runs a new set of attempts
            entry.status, entry.attempts = "queued", 0
    state.save()
    with _Progress(state, console, quiet) as progress:
        if backend == "local":
            interrupted = _run_local(state, retries, profile_config, progress)
        else:
            interrupted = _run_ray(
                state, retries, profile_config, progress, ray_address, gpus_per_run, cpus_per_run
            )
    report = None if interrupted else _report(state)
    outcome = SuiteOutcome(suite_dir, state.entries, interrupted, report)
    if not quiet:
        _print_summary(outcome, console)
    return outcome


def _record(state: SuiteState, progress: _Progress, result: dict) -> EntryState:
    entry = state.entries[result["key"]]
    for name in ("status", "run_dir", "error"):
        setattr(entry, name, result.get(name))
    state.save()
    progress.set(entry.key, _describe(entry))
    return entry


def _pending(state: SuiteState, retries: int) -> list[EntryState]:
    return [
        e
        for e in state.entries.values()
        if e.status != "complete" and not (e.status == "failed" and e.attempts > retries)
    ]


def _run_local(state: SuiteState, retries: int, config: ProfileConfig, progress) -> bool:
    try:
        return _run_local_entries(state, retries, config, progress)
    except KeyboardInterrupt:  # between runs: everything finished so far is already saved
        return True


def _run_local_entries(state: SuiteState, retries: int, config: ProfileConfig, progress) -> bool:
    for entry in state.entries.values():
        while entry.status != "complete" and entry.attempts <= retries:
            entry.attempts += 1
            state.save()
            key = entry.key
            result = run_entry(
                asdict(entry), str(state.suite_dir), config, lambda s, k=key: progress.set(k, s)
            )
            _record(state, progress, result)
            if entry.status == "interrupted":
                entry.attempts -= 1  # an interruption is not a failed attempt
                state.save()
                return True
    return False


def _run_ray(
    state: SuiteState,
    retries: int,
    config: ProfileConfig,
    progress: _Progress,
    address: str | None,
    gpus: float,
    cpus: float,
) -> bool:
    try:
        import ray
    except ImportError:
        raise ArchbenchError(
            '--backend ray needs Ray: pip install "archbench[ray]" (or pip install ray)'
        ) from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = address or "a new local instance"
            raise ArchbenchError(f"could not start or reach Ray at {where}: {error}") from None
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_entry)
    in_flight: dict[Any, str] = {}

    def submit(entry: EntryState) -> None:
        entry.attempts += 1
        progress.set(entry.key, "submitted to Ray")
        in_flight[remote.remote(asdict(entry), str(state.suite_dir), config)] = entry.key

    for entry in _pending(state, retries):
        submit(entry)
    state.save()
    try:
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=2.0)
            for ref in done:
                key = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as error:  # the worker died: count it as a failed attempt
                    result = asdict(state.entries[key]) | {
                        "status": "failed",
                        "error": f"Ray task failed: {type(error).__name__}: {error}",
                    }
                entry = _record(state, progress, result)
                if entry.status != "complete" and entry.attempts <= retries:
                    submit(entry)
                    state.save()
            for key in in_flight.values():
                progress.set(key, _ray_line(state, state.entries[key]))
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref)
        for key in in_flight.values():
            entry = state.entries[key]
            entry.status, entry.attempts = "interrupted", max(entry.attempts - 1, 0)
        state.save()
        return True
    return False


def _ray_line(state: SuiteState, entry: EntryState) -> str:
    """A running Ray job's progress, read from its run directory's metrics."""
    newest = None
    for config_path in state.suite_dir.glob(f"*/{runs.CONFIG}"):
        train = files.read_json(config_path).get("train", {})
        if train.get("arch") == entry.arch and train.get("dataset") == entry.dataset:
            newest = max(newest or config_path.parent, config_path.parent)
    if newest is None:
        return "starting on Ray"
    metrics = newest / runs.METRICS
    epochs = len(metrics.read_text().splitlines()) - 1 if metrics.is_file() else 0
    result = files.read_json(newest / runs.RESULT) if (newest / runs.RESULT).is_file() else {}
    if result.get("status") == "complete":
        return "profiling"
    return f"training epoch {epochs + 1}"


def _report(state: SuiteState) -> Path | None:
    from .report import collect_runs, write_report

    run_dirs = [Path(e.run_dir) for e in state.entries.values() if e.run_dir]
    if not run_dirs:
        return None
    out = state.suite_dir / "report.md"
    write_report(
        collect_runs(run_dirs),
        out,
        study="souza2020" if state.name == "souza2020" else None,
        title=f"suite {state.name}",
        notes=[
            f"suite directory: {state.suite_dir}",
            f"generated {time.strftime('%Y-%m-%d %H:%M')}",
        ],
    )
    return out


def _print_summary(outcome: SuiteOutcome, console: Console) -> None:
    table = Table(title="suite summary")
    for column in ("run", "status", "attempts", "run directory / reason"):
        table.add_column(column, overflow="fold")
    for entry in outcome.entries.values():
        detail = entry.error if entry.status == "failed" else (entry.run_dir or "")
        table.add_row(entry.key, _describe(entry), str(entry.attempts), detail or "")
    console.print(table)
    if outcome.interrupted:
        console.print("interrupted: rerun the same command to continue where it stopped")
    elif outcome.report:
        console.print(f"report: {outcome.report}")
