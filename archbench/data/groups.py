"""Class regroupings: one decision made of several classes (even/odd digits, animals/vehicles).

A regrouping is data — a named preset (:mod:`.group_presets`) or a JSON/TOML file mapping each
group to the dataset's class names — matched against a dataset's classes by
:meth:`Regrouping.resolve`, which refuses a name the dataset does not have or a class left out.
The resulting :class:`GroupMap` relabels targets (:func:`regroup_data`, to train a direct model)
and merges a fine model's outputs (:mod:`archbench.evaluate.regroup`). It lives with the data
because both training and evaluation need it, and they may not import each other.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..errors import ArchbenchError
from .datasets import ImageData, Split
from .group_presets import PRESETS


@dataclass(frozen=True)
class Regrouping:
    """Groups of class names as written (preset or file), not yet matched to a dataset."""

    name: str
    groups: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(group for group, _ in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "groups": {group: list(names) for group, names in self.groups}}

    def resolve(self, class_names: Sequence[str]) -> GroupMap:
        """Match every name to one of ``class_names``; each class must land in exactly one group.

        Names match exactly, else ignoring case, spaces and punctuation ("ankle boot" finds
        "Ankle boot"); torchvision's MNIST names ("3 - three") also answer to their digit.
        """
        lookup = _name_lookup(class_names)
        class_to_group: dict[int, int] = {}
        for group_index, (group, names) in enumerate(self.groups):
            for name in names:
                index = lookup.get(name, lookup.get(_normalised(name)))
                if index is None:
                    close = difflib.get_close_matches(name, list(class_names), n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ArchbenchError(
                        f"regrouping {self.name!r}: group {group!r} names {name!r}, which is not "
                        f"a class of this dataset{hint} (classes: {_listing(class_names)})"
                    )
                if index in class_to_group:
                    other = self.groups[class_to_group[index]][0]
                    where = (
                        f"both {other!r} and {group!r}" if other != group else f"{group!r} twice"
                    )
                    raise ArchbenchError(
                        f"regrouping {self.name!r}: class {class_names[index]!r} is in {where}"
                    )
                class_to_group[index] = group_index
        left_out = [name for index, name in enumerate(class_names) if index not in class_to_group]
        if left_out:
            raise ArchbenchError(
                f"regrouping {self.name!r} leaves out {', '.join(map(repr, left_out))}: "
                "every class must belong to exactly one group"
            )
        return GroupMap(
            name=self.name,
            group_names=self.group_names,
            class_names=tuple(class_names),
            class_to_group=tuple(class_to_group[i] for i in range(len(class_names))),
        )


@dataclass(frozen=True)
class GroupMap:
    """A regrouping matched to one dataset: the group index of every fine class index."""

    name: str
    group_names: tuple[str, ...]
    class_names: tuple[str, ...]
    class_to_group: tuple[int, ...]

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    @property
    def positive(self) -> str | None:
        """The positive group of a two-group regrouping (the last one, label 1)."""
        return self.group_names[-1] if self.num_groups == 2 else None

    def members(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {group: [] for group in self.group_names}
        for name, group in zip(self.class_names, self.class_to_group, strict=True):
            grouped[self.group_names[group]].append(name)
        return grouped

    def relabel(self, labels):
        """Fine labels -> group labels, as a tensor for a tensor and an array otherwise."""
        table = np.asarray(self.class_to_group, dtype=np.int64)
        if isinstance(labels, torch.Tensor):
            return torch.as_tensor(table, device=labels.device)[labels.long()]
        return table[np.asarray(labels, dtype=np.int64)]

    def merge_confusion(self, confusion: np.ndarray) -> np.ndarray:
        """Block sums: cell (g, h) adds every fine cell (i, j) with i in group g and j in h."""
        confusion = np.asarray(confusion, dtype=np.int64)
        if confusion.shape != (len(self.class_names),) * 2:
            raise ValueError(
                f"confusion matrix {confusion.shape} for {len(self.class_names)} classes"
            )
        one_hot = np.eye(self.num_groups, dtype=np.int64)[list(self.class_to_group)]
        return one_hot.T @ confusion @ one_hot

    def group_scores(self, logits: torch.Tensor) -> np.ndarray:
        """``(N, groups)``: each group's score is the sum of the fine softmax over its classes."""
        probabilities = torch.softmax(logits.detach().cpu().double(), dim=1).numpy()
        scores = np.zeros((probabilities.shape[0], self.num_groups))
        for fine, group in enumerate(self.class_to_group):
            scores[:, group] += probabilities[:, fine]
        return scores

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "groups": self.members(), "positive": self.positive}


def load_regrouping(spec: str) -> Regrouping:
    """A preset by name, or a ``.json``/``.toml`` file mapping group -> list of class names."""
    if spec in PRESETS:
        return _from_mapping(spec, PRESETS[spec])
    path = Path(spec).expanduser()
    if not path.is_file():
        if path.suffix.lower() in (".json", ".toml"):
            raise ArchbenchError(f"regrouping file not found: {path}")
        close = difflib.get_close_matches(spec, list(PRESETS), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ArchbenchError(
            f"unknown regrouping {spec!r}: {hint}presets are {', '.join(PRESETS)}, "
            "or give a .json/.toml file"
        )
    try:
        if path.suffix.lower() == ".toml":
            mapping = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ArchbenchError(f"cannot read regrouping {path}: {first}") from None
    return _from_mapping(str(path), mapping)


def regrouping_from_record(record: Mapping[str, Any]) -> Regrouping:
    """The regrouping a run recorded (``GroupMap.to_dict``), whatever became of its file."""
    return _from_mapping(str(record["name"]), dict(record["groups"]))


def _from_mapping(name: str, mapping: Any) -> Regrouping:
    shape = "a mapping of group name to a list of class names"
    if not isinstance(mapping, Mapping) or len(mapping) < 2:
        raise ArchbenchError(f"regrouping {name!r} must be {shape}, with at least two groups")
    groups = []
    for group, names in mapping.items():
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(item, str) for item in names)
        ):
            raise ArchbenchError(
                f"regrouping {name!r}: group {group!r} must be a non-empty list of class names"
            )
        groups.append((str(group), tuple(names)))
    return Regrouping(name=name, groups=tuple(groups))


def _listing(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _normalised(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def _name_lookup(class_names: Sequence[str]) -> dict[str, int]:
    """Exact names first, then normalised ones; a normalised key two classes share is dropped."""
    lookup: dict[str, int] = {}
    loose: dict[str, int | None] = {}
    for index, name in enumerate(class_names):
        lookup[name] = index
        keys = {_normalised(name)}
        if " - " in name:  # torchvision MNIST: "3 - three"
            keys.add(_normalised(name.split(" - ", 1)[0]))
        for key in keys:
            loose[key] = None if key in loose and loose[key] != index else index
    for key, index in loose.items():
        if index is not None:
            lookup.setdefault(key, index)
    return lookup


def regroup_data(data: ImageData, group_map: GroupMap) -> ImageData:
    """``data`` with every split's labels relabelled to groups and the groups as its classes."""
    if tuple(data.classes) != group_map.class_names:
        raise ArchbenchError(f"regrouping {group_map.name!r} was resolved for other classes")

    def relabel(split: Split | None) -> Split | None:
        return None if split is None else Split(split.images, group_map.relabel(split.labels))

    return replace(
        data,
        classes=list(group_map.group_names),
        train=relabel(data.train),
        val=relabel(data.val),
        test=relabel(data.test),
    )
