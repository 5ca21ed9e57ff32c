"""The run directory: one folder per training run, holding everything needed to trust or redo it.

runs/<YYYYmmdd-HHMMSS>-<arch>-<dataset>/
    config.json    resolved configuration, package versions, machine
    metrics.csv    one row per epoch
    last.pt        latest state (model, optimizer, schedule, RNG, history) for --resume
    best.pt        the selected checkpoint (model weights and what is needed to use them)
    result.json    status: running -> complete | interrupted | failed, and final figures
    train.log      what was printed
    profile.json   the profiler's figures (after training)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import files
from ..errors import ArchbenchError

CONFIG = "config.json"
METRICS = "metrics.csv"
LAST = "last.pt"
BEST = "best.pt"
RESULT = "result.json"
LOG = "train.log"
PROFILE = "profile.json"
EXPLAIN = "explain.json"  # which test images `archbench explain` drew, and how

CHECKPOINT_FORMAT = "archbench-checkpoint-1"

STATUSES = ("running", "complete", "interrupted", "failed")


def slug(text: str) -> str:
    """A file-name-safe short form of an arch or dataset name (``imagefolder:/a/b`` -> ``b``)."""
    if ":" in text:
        kind, _, rest = text.partition(":")
        text = f"{kind}-{Path(rest.rstrip('/')).stem}" if kind == "imagefolder" else rest
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "run"


def ensure_writable(runs_dir: Path) -> Path:
    """Create ``runs_dir`` if needed and prove we can write in it, before any work starts."""
    runs_dir = Path(runs_dir).expanduser()
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        probe = runs_dir / f".write-test-{time.time_ns()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ArchbenchError(
            f"runs directory {runs_dir} is not writable ({error.strerror})"
        ) from None
    return runs_dir


def run_name(arch: str, dataset: str) -> str:
    """``<timestamp>-<arch>-<dataset>``: a run's folder name, or a seed group's shared prefix."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(arch)}-{slug(dataset)}"


def new_group_name(runs_dir: Path, arch: str, dataset: str) -> str:
    """A seed group's prefix no folder in ``runs_dir`` starts with yet (groups never mix)."""
    base = run_name(arch, dataset)
    taken = {p.name for p in Path(runs_dir).expanduser().glob(f"{base}*")}
    for attempt in range(1000):
        candidate = base if attempt == 0 else f"{base}-{attempt}"
        if not any(name == candidate or name.startswith(f"{candidate}-s") for name in taken):
            return candidate
    raise ArchbenchError(f"could not find a free group name under {runs_dir}")


def new_run_dir(runs_dir: Path, arch: str, dataset: str, name: str | None = None) -> Path:
    """``<runs_dir>/<name or timestamp-arch-dataset>``, with a numeric suffix on a collision."""
    runs_dir = ensure_writable(runs_dir)
    base = name or run_name(arch, dataset)
    for attempt in range(1000):
        candidate = runs_dir / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise ArchbenchError(f"could not create a new run directory under {runs_dir}")


@dataclass(frozen=True)
class RunInfo:
    """What a run directory says about itself."""

    path: Path
    config: dict
    result: dict

    @property
    def status(self) -> str:
        return self.result.get("status", "unknown")


def read_run(path: Path) -> RunInfo:
    """Load a run directory's config and result, or explain why it is not one."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ArchbenchError(f"run directory {path} does not exist")
    config_path, result_path = path / CONFIG, path / RESULT
    if not config_path.is_file() or not result_path.is_file():
        raise ArchbenchError(f"{path} is not an archbench run directory (no {CONFIG}/{RESULT})")
    remedy = f"the run cannot be trusted: remove {path} and train it again"
    config, result = read_json_file(config_path, remedy), read_json_file(result_path, remedy)
    if "train" not in config:
        raise ArchbenchError(f"{path} is not an archbench run directory ({CONFIG} has no 'train')")
    return RunInfo(path=path, config=config, result=result)


def read_json_file(path: Path, remedy: str) -> dict:
    """A JSON object archbench wrote, or one line naming the file, what is wrong, and ``remedy``.

    Files are written atomically, so a corrupt one was damaged afterwards (a full disk, a copy
    cut short, a hand edit); a traceback would not say which file, nor what to do.
    """
    try:
        data = files.read_json(path)
    except OSError as error:
        raise ArchbenchError(f"{path} cannot be read ({error.strerror}); {remedy}") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ArchbenchError(f"{path} is corrupt or truncated ({error}); {remedy}") from None
    if not isinstance(data, dict):
        raise ArchbenchError(f"{path} is corrupt or truncated (not a JSON object); {remedy}")
    return data


def profile_remedy(run_dir: Path) -> str:
    return f"profile it again: archbench profile {run_dir} (in a suite: rerun with --reprofile)"


def load_checkpoint(path: Path, *, expect: dict | None = None) -> dict:
    """Load an archbench checkpoint safely (``weights_only``) and check it is the one we want."""
    path = Path(path)
    if not path.is_file():
        raise ArchbenchError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise ArchbenchError(
            f"checkpoint {path} is unreadable or corrupt: {str(error).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ArchbenchError(f"{path} is not an archbench checkpoint")
    for key, value in (expect or {}).items():
        if key != "format" and state.get(key) != value:
            raise ArchbenchError(
                f"checkpoint {path} is for {key}={state.get(key)!r}, expected {value!r}"
            )
    return state
