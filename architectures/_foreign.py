"""Networks from other libraries by name: ``torchvision.models:NAME`` and ``timm:NAME``.

Neither library's builders take archbench's ``in_channels``: torchvision's classification builders
fix their input to 3 channels (so grayscale sets are replicated), timm's ``create_model`` takes
``in_chans``. Both are built with random weights (``weights=None`` / ``pretrained=False``): a
benchmark never downloads anything. Their input size is the one they were designed for (from
the weights' preset or timm's pretrained config), used for ``archbench list``; ``run`` and
``profile`` feed them the dataset's own size instead (``ArchInfo.follows_dataset``).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import re

from torch import nn

from ._info import ArchInfo, ArchitectureError

TORCHVISION_PREFIX = "torchvision.models:"
TIMM_PREFIX = "timm:"
PREFIXES = (TORCHVISION_PREFIX, TIMM_PREFIX)
DEFAULT_FOREIGN_SIZE = (3, 224, 224)  # when a library records no input size for a network

# archbench trains with one cross-entropy on the logits: the auxiliary heads torchvision adds
# by default would make training-mode outputs tuples, so they are switched off.
_TORCHVISION_BUILD_OPTIONS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def is_foreign(name: str) -> bool:
    """A ``torchvision.models:`` or ``timm:`` reference rather than a registered name."""
    return name.startswith(PREFIXES)


def list_foreign(pattern: str) -> list[str]:
    """Prefixed names matching ``torchvision.models:*`` / ``timm:mobilenet*`` style patterns."""
    prefix = next(p for p in PREFIXES if pattern.startswith(p))
    names = _torchvision_names() if prefix == TORCHVISION_PREFIX else _timm_names()
    wanted = pattern[len(prefix) :] or "*"
    return [prefix + name for name in names if fnmatch.fnmatchcase(name, wanted)]


def foreign_info(reference: str) -> ArchInfo:
    """Metadata and a uniform ``builder(num_classes, in_channels=...)`` for a foreign network."""
    if reference.startswith(TORCHVISION_PREFIX):
        return _torchvision_info(reference[len(TORCHVISION_PREFIX) :])
    return _timm_info(reference[len(TIMM_PREFIX) :])


# --- torchvision -------------------------------------------------------------------------------


@functools.cache
def _torchvision_names() -> list[str]:
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_info(name: str) -> ArchInfo:
    import torchvision.models

    reference = TORCHVISION_PREFIX + name
    names = _torchvision_names()
    if name not in names:
        raise ArchitectureError(_unknown(reference, name, names, "torchvision classification"))
    builder = getattr(torchvision.models, name)
    options = _TORCHVISION_BUILD_OPTIONS.get(name, {})

    def build(num_classes: int) -> nn.Module:
        return builder(weights=None, num_classes=num_classes, **options)

    build.__name__ = name
    return ArchInfo(
        name=reference,
        family="torchvision",
        description=_first_line(builder.__doc__) or f"torchvision.models.{name}",
        input_size=_torchvision_input_size(name),
        builder=build,
        follows_dataset=True,
        channels_settable=False,
    )


def _torchvision_input_size(name: str) -> tuple[int, int, int]:
    """The centre-crop size of the network's first weights preset (224 for most, 299, 384...)."""
    import torchvision.models

    try:
        weights = next(iter(torchvision.models.get_model_weights(name)))
        crop = weights.transforms.keywords.get("crop_size")
    except (AttributeError, KeyError, StopIteration, ValueError):
        return DEFAULT_FOREIGN_SIZE
    return (3, int(crop), int(crop)) if crop else DEFAULT_FOREIGN_SIZE


# --- timm --------------------------------------------------------------------------------------


def _import_timm():
    try:
        import timm
    except ImportError:
        raise ArchitectureError(
            "timm networks need the timm package, which is not installed: "
            "pip install 'archbench[timm]'"
        ) from None
    return timm


@functools.cache
def _timm_names() -> list[str]:
    return sorted(_import_timm().list_models())


def _timm_info(name: str) -> ArchInfo:
    timm = _import_timm()
    reference = TIMM_PREFIX + name
    if not name or not timm.is_model(name):
        raise ArchitectureError(_unknown(reference, name, _timm_names(), "timm"))

    def build(num_classes: int, in_channels: int = 3) -> nn.Module:
        return timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_channels
        )

    build.__name__ = name
    return ArchInfo(
        name=reference,
        family="timm",
        description=f"timm {name} (random init)",
        input_size=_timm_input_size(timm, name),
        builder=build,
        follows_dataset=True,
        channels_settable=True,
    )


def _timm_input_size(timm, name: str) -> tuple[int, int, int]:
    try:
        config = timm.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001  (a model without a config simply has no recorded size)
        config = None
    size = getattr(config, "input_size", None)
    return tuple(int(v) for v in size) if size and len(size) == 3 else DEFAULT_FOREIGN_SIZE


# --- shared ------------------------------------------------------------------------------------


def _unknown(reference: str, name: str, names: list[str], library: str) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    prefix = reference[: len(reference) - len(name)]
    if close:
        hint = " or ".join(repr(prefix + c) for c in close)
        return f"unknown {library} network {reference!r}; did you mean {hint}?"
    return f"unknown {library} network {reference!r}; list them with: archbench list '{prefix}*'"


def _first_line(text: str | None) -> str:
    """The docstring's first sentence with reStructuredText links reduced to their titles."""
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    plain = re.sub(r"`([^`<]+?)\s*<[^>]*>`_{1,2}", r"\1", paragraph)
    return plain.split(". ")[0].rstrip(".")
