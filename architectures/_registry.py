"""The architecture registry: one decorator records a builder and what it builds.

Modelled on timm's ``_registry.py``: ``@register_arch`` keys an entry on the builder's name,
``list_archs`` filters with shell-style wildcards, ``create_arch`` builds by name. Users add their
own networks without editing archbench, either as ``FILE.py:FUNC`` / ``module.path:FUNC``
references or through the ``archbench.architectures`` entry-point group.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

Builder = Callable[..., nn.Module]
ENTRY_POINT_GROUP = "archbench.architectures"


class ArchitectureError(ValueError):
    """An architecture that cannot be found, loaded or built; the message is for the user."""


@dataclass(frozen=True)
class ArchInfo:
    """What the registry knows about a network besides how to build it."""

    name: str
    family: str
    description: str
    paper: str = ""
    input_size: tuple[int, int, int] = (3, 32, 32)
    builder: Builder | None = None


_REGISTRY: dict[str, ArchInfo] = {}
_entry_points_loaded = False


def register_arch(
    *, family: str, description: str, paper: str = "", input_size=(3, 32, 32)
) -> Callable[[Builder], Builder]:
    """Register ``builder`` under its function name; a duplicate name is refused."""

    def decorator(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = ArchInfo(
            name=name,
            family=family,
            description=description,
            paper=paper,
            input_size=tuple(input_size),
            builder=builder,
        )
        return builder

    return decorator


def _load_entry_points() -> None:
    """Import installed packages that register networks under the entry-point group, once."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry_point.load()
        # An entry point may name a module (registering on import) or a builder function.
        if callable(loaded) and not inspect.ismodule(loaded) and entry_point.name not in _REGISTRY:
            _REGISTRY[entry_point.name] = ArchInfo(
                name=entry_point.name,
                family="plugin",
                description=_first_doc_line(loaded) or f"from {entry_point.value}",
                builder=loaded,
            )


def list_archs(pattern: str = "*") -> list[str]:
    """Sorted names of registered networks matching a shell-style wildcard (``squeezenet*``)."""
    _load_entry_points()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def is_user_reference(name: str) -> bool:
    """``FILE.py:FUNC`` or ``package.module:FUNC`` rather than a registered name."""
    return ":" in name


def arch_info(name: str) -> ArchInfo:
    """Metadata of a registered network, or of a user builder reference."""
    if is_user_reference(name):
        builder = load_user_builder(name)
        return ArchInfo(
            name=name,
            family="user",
            description=_first_doc_line(builder) or f"user network {name}",
            builder=builder,
        )
    _load_entry_points()
    if name not in _REGISTRY:
        raise ArchitectureError(_unknown_message(name))
    return _REGISTRY[name]


def create_arch(
    name: str, num_classes: int = 10, in_channels: int | None = None, **kwargs
) -> nn.Module:
    """Build a network by registered name or ``FILE.py:FUNC`` / ``module:FUNC`` reference.

    ``None`` keyword arguments are dropped (timm's convention), so a CLI flag left unset keeps the
    architecture's own default; ``in_channels`` left unset is the registered ``input_size``'s.
    """
    if num_classes < 1:
        raise ArchitectureError(f"num_classes must be positive, got {num_classes}")
    info = arch_info(name)
    builder = info.builder
    native_channels = info.input_size[0]
    in_channels = native_channels if in_channels is None else in_channels
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if _accepts(builder, "in_channels"):
        kwargs["in_channels"] = in_channels
    elif in_channels != native_channels:
        raise ArchitectureError(
            f"builder for {name!r} takes no in_channels; it expects {native_channels}"
        )
    model = builder(num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise ArchitectureError(
            f"builder for {name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def load_user_builder(reference: str) -> Builder:
    """Resolve ``path/to/file.py:func`` or ``package.module:func`` to a callable.

    Errors raised while importing the user's code are reported with the file and line where they
    happened, so a typo in someone's network is not mistaken for an archbench bug.
    """
    target, _, func_name = reference.rpartition(":")
    if not target or not func_name:
        raise ArchitectureError(f"expected FILE.py:FUNC or module:FUNC, got {reference!r}")
    if target.endswith(".py") or "/" in target or Path(target).is_file():
        module = _import_file(Path(target))
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            if error.name and target.startswith(error.name):
                raise ArchitectureError(f"cannot import module {target!r}: {error}") from None
            raise ArchitectureError(_import_failure(target, error)) from None
        except Exception as error:  # the user's module failed while importing
            raise ArchitectureError(_import_failure(target, error)) from None
    builder = getattr(module, func_name, None)
    if builder is None or not callable(builder):
        available = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        hint = difflib.get_close_matches(func_name, available, n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ArchitectureError(f"{target} has no callable {func_name!r}{suffix}")
    return builder


def _import_file(path: Path):
    if not path.is_file():
        raise ArchitectureError(f"architecture file not found: {path}")
    module_name = f"archbench_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ArchitectureError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ArchitectureError(_import_failure(str(path), error)) from None
    return module


def _import_failure(target: str, error: BaseException) -> str:
    """One line naming the innermost frame of the user's code that raised."""
    where = ""
    if isinstance(error, SyntaxError) and error.filename:
        where = f" at {error.filename}:{error.lineno}"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        user_frames = [f for f in frames if "importlib" not in f.filename]
        if user_frames:
            frame = user_frames[-1]
            where = f" at {frame.filename}:{frame.lineno}"
    return f"error importing {target}{where}: {type(error).__name__}: {error}"


def _unknown_message(name: str) -> str:
    names = list(_REGISTRY)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if not close:
        lowered = name.lower().replace("-", "_")
        close = [n for n in names if n == lowered]
    if close:
        hint = " or ".join(repr(c) for c in close)
        return f"unknown architecture {name!r}; did you mean {hint}?"
    return f"unknown architecture {name!r}; registered: {', '.join(sorted(names))}"


def _accepts(builder: Builder, parameter: str) -> bool:
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return False
    return parameter in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _first_doc_line(obj) -> str:
    return (inspect.getdoc(obj) or "").strip().splitlines()[0] if inspect.getdoc(obj) else ""
