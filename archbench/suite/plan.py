"""Planning a suite: its runs from a preset or a TOML/YAML file, filtered and overridden.

A plan is a list of :class:`SuiteEntry` (architecture, dataset, training overrides); ``seeds``
expands an entry into one run per seed, and ``sweep`` (settings -> lists of values) into one run
per combination of values, each tagged in its key (``...-pos_weight10``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from architectures import list_archs

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from ..errors import ArchbenchError
from ..train import TrainConfig, rundir

STUDY_ARCHS = ("squeezenet_dsc", "squeezenet", "mobilenet", "alexnet", "vgg19")

# Presets are data: networks x datasets, and settings applied to every run.
PRESETS: dict[str, dict[str, Any]] = {
    "souza2020": {
        "archs": STUDY_ARCHS,
        "datasets": ("cifar10", "cifar100"),
        "set": {},  # the trainer's defaults are the study's reference code
    },
    # Seed 000's studies on the offline multi-label set: its positive weights, and a learning
    # curve over training-set sizes (digits-mosaic has 1,294 training images after validation).
    # 20 epochs as the seed; lr 0.001, not its 1e-4, which fine-tuned 224-pixel networks.
    "seed000-weights": {
        "archs": ("squeezenet_dsc",),
        "datasets": ("digits-mosaic",),
        "set": {"task": "multilabel", "max_epochs": 20, "lr": 0.001},
        "sweep": {"pos_weight": ["1", "10", "100", "1000"]},
    },
    "seed000-sizes": {
        "archs": ("squeezenet_dsc",),
        "datasets": ("digits-mosaic",),
        "set": {"task": "multilabel", "max_epochs": 20, "lr": 0.001, "pos_weight": "auto"},
        "sweep": {"train_limit": [150, 300, 600, 1294]},
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
        key = f"{rundir.slug(self.arch)}-{rundir.slug(self.dataset)}"
        if self.overrides.get("_tag"):
            key += f"-{self.overrides['_tag']}"
        # Runs that differ only in seed are one group; each seed is its own run.
        return f"{key}-s{self.overrides['seed']}" if self.seeded else key

    @property
    def seeded(self) -> bool:
        return bool(self.overrides.get("_seeded"))

    @property
    def group(self) -> str | None:
        """What a seeded entry shares with its other seeds (None unseeded): the reports' group.

        Derived from arch, dataset and the settings other than the seed, so entries from two
        ``[[runs]]`` blocks with the same settings and different seeds are one group.
        """
        if not self.seeded:
            return None
        settings = json.dumps(_unseeded(self).overrides, sort_keys=True)
        digest = hashlib.sha1(settings.encode()).hexdigest()[:8]
        return f"{rundir.slug(self.arch)}-{rundir.slug(self.dataset)}-{digest}"

    def train_config(self, suite_dir: Path) -> TrainConfig:
        settings = {k: v for k, v in self.overrides.items() if not k.startswith("_")}
        return TrainConfig(
            arch=self.arch, dataset=self.dataset, runs_dir=str(suite_dir), **settings
        )


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
            overrides[key] = parse_seeds(text)
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
    base_seeds = parse_seeds(spec.get("seeds"))
    sweep = _sweep_settings(spec.get("sweep"))
    # --datasets replaces the plan's datasets (any dataset: digits gives a quick offline pass).
    wanted = _split(datasets) if datasets else _listed(spec.get("datasets", ()), "datasets")
    entries = [
        entry
        for dataset in wanted
        for arch in _expand_archs(spec.get("archs", ()))
        for swept in _swept(SuiteEntry(arch, dataset, base), sweep)
        for entry in _seeded(swept, base_seeds)
    ]
    for extra in spec.get("runs", ()):
        if not isinstance(extra, dict) or "arch" not in extra:
            raise ArchbenchError(f"every [[runs]] entry needs an arch: {extra}")
        # An entry without a dataset runs on each of the plan's datasets.
        extra_datasets = [extra["dataset"]] if "dataset" in extra else wanted
        # A tag names the entry in its key, so one network can run under two protocols.
        tag = {"_tag": rundir.slug(str(extra["tag"]))} if extra.get("tag") else {}
        for dataset in extra_datasets:
            if datasets and dataset not in wanted:
                continue
            entry = SuiteEntry(extra["arch"], dataset, base | dict(extra.get("set", {})) | tag)
            entries += _seeded(entry, parse_seeds(extra.get("seeds")) or base_seeds)
    if archs:
        entries = [e for e in entries if _select([e.arch], archs)]
    if overrides:
        overrides = dict(overrides)
        override_seeds = parse_seeds(overrides.pop("seeds", None))
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


def _sweep_settings(value) -> dict[str, list]:
    """A plan's ``sweep``: training settings, each with the list of values to try."""
    if value is None:
        return {}
    known = {f.name for f in fields(TrainConfig)}
    if not isinstance(value, dict) or not all(isinstance(v, list) and v for v in value.values()):
        raise ArchbenchError(f"sweep must map settings to non-empty lists, got {value!r}")
    unknown = sorted(set(value) - known)
    if unknown or RESERVED & set(value):
        raise ArchbenchError(f"sweep: cannot sweep {', '.join(unknown or sorted(RESERVED))}")
    return value


def _swept(entry: SuiteEntry, sweep: dict[str, list]) -> list[SuiteEntry]:
    """One entry per combination of the swept values, tagged (``pos_weight10``) in its key."""
    if not sweep:
        return [entry]
    names = list(sweep)
    return [
        replace(
            entry,
            overrides=entry.overrides
            | dict(zip(names, values, strict=True))
            | {
                "_tag": "-".join(rundir.slug(f"{n}{v}") for n, v in zip(names, values, strict=True))
            },
        )
        for values in itertools.product(*(sweep[n] for n in names))
    ]


def parse_seeds(value) -> list[int]:
    """``seeds`` of a plan or ``--seeds``: a list of ints or a comma-separated string ("0,1,2")."""
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
    unknown = set(spec) - {"archs", "datasets", "set", "runs", "seeds", "sweep"}
    if unknown:
        raise ArchbenchError(f"suite file {path}: unknown keys {', '.join(sorted(unknown))}")
    return spec
