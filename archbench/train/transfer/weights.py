"""``--weights SOURCE``: pretrained weights from a torchvision name, a file or a run directory.

SOURCE is, in order of precedence:

- an archbench run directory: its ``best.pt`` (the run must be complete);
- a file: a state dict saved with ``torch.save`` (also an archbench checkpoint, or a dict with a
  ``state_dict``/``model`` entry), read with ``weights_only=True``;
- a torchvision weights name (``IMAGENET1K_V1``, or ``ResNet18_Weights.IMAGENET1K_V1``) for a
  ``torchvision.models:NAME`` network, loaded through torchvision's own mechanism, so a file
  already in the torch hub cache works offline.

Loading keeps every tensor whose name and shape match; tensors whose shape differs (a classifier
for another class count) are skipped and named, and anything else that does not fit is an error,
since a half-loaded backbone would silently give meaningless features.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...data.torchvision_sets import _check_resolvable
from ...errors import ArchbenchError
from .. import rundir

TORCHVISION_PREFIX = "torchvision.models:"
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel and torch.compile


@dataclass(frozen=True)
class Weights:
    """A resolved weights source: the tensors and where they came from."""

    source: str
    kind: str  # "run", "file" or "torchvision"
    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor] = field(repr=False, compare=False)

    def describe(self) -> dict:
        """What ``config.json`` records about the weights."""
        return {"source": self.source, "kind": self.kind, "path": str(self.path),
                "sha256": self.sha256}  # fmt: skip


@dataclass(frozen=True)
class LoadReport:
    """How a state dict fitted a network."""

    loaded: int
    skipped: tuple[str, ...]  # names whose shapes differ (e.g. the classifier)

    def describe(self) -> dict:
        return {"loaded_tensors": self.loaded, "skipped_keys": list(self.skipped)}


def resolve_weights(source: str, arch: str) -> Weights:
    """Find and read the weights that ``source`` names, for the network ``arch``."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_run(path, source)
    if path.is_file():
        return Weights(source, "file", path, file_sha256(path), read_state_dict(path))
    if "/" in source or path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        raise ArchbenchError(f"--weights {source}: no such file or run directory")
    return _from_torchvision(source, arch)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A name -> tensor mapping from ``path``, or one line saying why the file is not one."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a foreign file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArchbenchError(f"{path} is not a state dict (torch.load failed: {reason})") from None
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):  # an archbench checkpoint, a Lightning-style file
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise ArchbenchError(f"{path} is not a state dict (it holds {type(loaded).__name__})")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise ArchbenchError(f"{path} is not a state dict (not a mapping of names to tensors)")
    return dict(loaded)


def load_weights(model: nn.Module, weights: Weights) -> LoadReport:
    """Copy ``weights`` into ``model``: everything that fits; shape mismatches are skipped."""
    state = {_strip_wrappers(name): tensor for name, tensor in weights.state_dict.items()}
    own = model.state_dict()
    missing = [name for name in own if name not in state]
    unexpected = [name for name in state if name not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the network's tensors missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown to it (e.g. {unexpected[0]})")
        raise ArchbenchError(
            f"weights {weights.source} do not fit {type(model).__name__}: {'; '.join(parts)}"
        )
    skipped = tuple(name for name, tensor in own.items() if tensor.shape != state[name].shape)
    if len(skipped) == len(own):
        raise ArchbenchError(f"weights {weights.source}: no tensor has the network's shapes")
    fitting = {name: tensor for name, tensor in state.items() if name not in skipped}
    model.load_state_dict(fitting, strict=False)
    return LoadReport(loaded=len(fitting), skipped=skipped)


def _strip_wrappers(name: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def _from_run(path: Path, source: str) -> Weights:
    info = rundir.read_run(path)
    best = info.path / rundir.BEST
    if info.status != "complete":
        raise ArchbenchError(f"--weights {source}: run is {info.status}, not complete")
    if not best.is_file():
        raise ArchbenchError(f"--weights {source}: run has no {rundir.BEST}")
    checkpoint = rundir.load_checkpoint(best)
    return Weights(source, "run", best, file_sha256(best), dict(checkpoint["model"]))


def _from_torchvision(name: str, arch: str) -> Weights:
    """A torchvision weights enum entry, read from the hub cache (or downloaded when possible)."""
    import torchvision.models as tv_models

    if not arch.startswith(TORCHVISION_PREFIX):
        raise ArchbenchError(
            f"--weights {name}: not a file or run directory, and a torchvision weights name "
            f"needs a {TORCHVISION_PREFIX}NAME network (got {arch})"
        )
    model_name = arch[len(TORCHVISION_PREFIX) :]
    try:
        enum = tv_models.get_model_weights(model_name)
    except (ValueError, KeyError, AttributeError):
        raise ArchbenchError(f"torchvision has no weights for {model_name!r}") from None
    entry = name.rpartition(".")[2]
    if entry not in enum.__members__:
        raise ArchbenchError(
            f"unknown weights {name!r} for {model_name}; torchvision has "
            f"{', '.join(enum.__members__)}"
        )
    weights = enum[entry]
    cached = (
        Path(torch.hub.get_dir())
        / "checkpoints"
        / Path(urllib.parse.urlparse(weights.url).path).name
    )
    try:
        if not cached.is_file():  # fail fast offline, before torch announces a download
            _check_resolvable(weights.url)
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArchbenchError(
            f"torchvision weights {enum.__name__}.{entry} are not in the torch hub cache "
            f"({cached}) and could not be downloaded: {reason}"
        ) from None
    return Weights(f"{enum.__name__}.{entry}", "torchvision", cached, file_sha256(cached), state)
