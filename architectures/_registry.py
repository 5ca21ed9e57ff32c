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
from pathlib import Path

import torch
from torch import nn

from ._foreign import TORCHVISION_PREFIX, foreign_info, is_foreign, list_foreign
from ._info import ArchInfo, ArchitectureError, Builder, Shape

ENTRY_POINT_GROUP = "archbench.architectures"
# Not ours to debug: a failure while building one of these is the network's, reported in a line.
OUTSIDE_FAMILIES = frozenset({"user", "plugin", "torchvision", "timm"})


_REGISTRY: dict[str, ArchInfo] = {}
_entry_points_loaded = False


def register_arch(
    *, family: str, description: str, paper: str = "", input_size: Shape = (3, 32, 32)
) -> Callable[[Builder], Builder]:
    """Register ``builder`` under its function name; a duplicate name is refused.

    ``input_size`` is the ``(channels, height, width)`` the network is always fed: datasets are
    converted to it (e.g. ``(1, 28, 28)`` gets Fashion-MNIST as it is).
    """

    def decorator(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        if len(input_size) != 3 or any(int(v) < 1 for v in input_size):
            raise ValueError(f"input_size must be (channels, height, width), got {input_size}")
        _REGISTRY[name] = ArchInfo(
            name=name,
            family=family,
            description=description,
            paper=paper,
            input_size=tuple(int(v) for v in input_size),
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
    """Sorted names matching a shell-style wildcard: registered (``squeezenet*``) or foreign
    (``torchvision.models:*``, ``timm:mobilenet*``)."""
    if is_foreign(pattern):
        return list_foreign(pattern)
    _load_entry_points()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def is_user_reference(name: str) -> bool:
    """``FILE.py:FUNC`` or ``package.module:FUNC`` rather than a registered or foreign name."""
    return ":" in name and not is_foreign(name)


def arch_info(name: str) -> ArchInfo:
    """Metadata of a registered network, a foreign one, or a user builder reference."""
    if is_foreign(name):
        return foreign_info(name)
    if is_user_reference(name):
        builder = load_user_builder(name)
        return ArchInfo(
            name=name,
            family="user",
            description=_first_doc_line(builder) or f"user network {name}",
            builder=builder,
            follows_dataset=True,
            channels_settable=_channel_parameter(builder) is not None,
        )
    _load_entry_points()
    if name not in _REGISTRY:
        raise ArchitectureError(_unknown_message(name))
    return _REGISTRY[name]


def create_arch(
    name: str, num_classes: int = 10, in_channels: int | None = None, **kwargs
) -> nn.Module:
    """Build a network by registered name, foreign name or ``FILE.py:FUNC`` reference.

    The builder gets ``in_channels`` (or ``in_chans``) only when its signature names it; one that
    does not can only be built for its registered channels (3 for foreign networks).
    ``in_channels`` left unset is the registered ``input_size``'s. ``None`` keyword arguments are
    dropped (timm's convention), so a CLI flag left unset keeps the architecture's own default.
    """
    if num_classes < 1:
        raise ArchitectureError(f"num_classes must be positive, got {num_classes}")
    info = arch_info(name)
    builder = info.builder
    native_channels = info.input_size[0]
    in_channels = native_channels if in_channels is None else in_channels
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    channel_parameter = _channel_parameter(builder)
    if channel_parameter is not None:
        kwargs[channel_parameter] = in_channels
    elif in_channels != native_channels:
        raise ArchitectureError(
            f"{name} cannot take {in_channels}-channel input; it expects {native_channels}"
        )
    if info.family in OUTSIDE_FAMILIES:
        try:
            model = builder(num_classes=num_classes, **kwargs)
        except ArchitectureError:
            raise
        except Exception as error:  # the network's own code failed: one line, no traceback
            raise ArchitectureError(f"building {name} failed: {_one_line(error)}") from None
    else:
        model = builder(num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise ArchitectureError(
            f"builder for {name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def check_output(model: nn.Module, name: str, input_shape: Shape, num_classes: int) -> None:
    """Run ``model`` once (eval mode, batch 2, zeros) and insist on ``(2, num_classes)`` logits.

    Done before anything is written, so a network that cannot take the dataset's images (too
    small for its downsampling, a fixed-size classifier) or that returns something other than
    logits fails in one line rather than a traceback half-way through a run.
    """
    shape_text = "x".join(str(v) for v in input_shape)
    device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros((2, *input_shape), device=device))
    except Exception as error:  # the network cannot run on this input
        raise ArchitectureError(
            f"{name} cannot run on {shape_text} input: {_one_line(error)}"
            " (--input-size changes the size)"
        ) from None
    finally:
        model.train(was_training)
    got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if got != (2, num_classes):
        raise ArchitectureError(
            f"{name} returns {got} for a batch of 2 {shape_text} images; "
            f"expected logits of shape (2, {num_classes})"
        )


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
    if name not in names and list_foreign(TORCHVISION_PREFIX + name):
        close = [TORCHVISION_PREFIX + name]  # "resnet18" is torchvision's
    if close:
        hint = " or ".join(repr(c) for c in close)
        return f"unknown architecture {name!r}; did you mean {hint}?"
    return f"unknown architecture {name!r}; registered: {', '.join(sorted(names))}"


def _channel_parameter(builder: Builder) -> str | None:
    """``in_channels`` or ``in_chans`` when the builder's signature names one, else None.

    ``**kwargs`` does not count: torchvision's builders take it and pass it on to model classes
    that accept no channel argument.
    """
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return None
    return next((p for p in ("in_channels", "in_chans") if p in parameters), None)


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _first_doc_line(obj) -> str:
    return (inspect.getdoc(obj) or "").strip().splitlines()[0] if inspect.getdoc(obj) else ""
