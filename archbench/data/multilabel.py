"""Multi-label datasets: several labels per image, held as multi-hot uint8 ``(N, K)`` targets.

Two kinds of source:

- ``csv:PATH`` — a CSV file with an image path column (relative to the CSV's folder, or
  absolute), a labels column (labels separated by ``CsvLayout.separator``, default ``;``; an
  empty cell is an image with no label) and an optional split column (``train`` / ``test``).
  Without a split column, a fixed seeded 20% of the rows (seed 0) is the test split. The label
  vocabulary is the sorted set of labels seen in training rows; a label seen only in test rows is
  an error, since no network can learn it. Images are decoded once (with the image folders'
  decoder) and cached under ``<data_dir>/csv-cache/`` keyed by the CSV's content and every
  image's path, size and modification time.
- ``mosaic:DATASET`` (``digits-mosaic`` = ``mosaic:digits``; e.g. ``mosaic:imagefolder:PATH``):
  2x2 mosaics of a single-label dataset's images at their native channels (MNIST-style 28x28
  sets padded to 32x32 first), each tile downscaled to 16x16 (bilinear, antialiased), so a
  mosaic is natively ``(C, 32, 32)`` and is then fitted to the network's input like any set.
  Each mosaic holds k distinct classes, k uniform in 1..4; every chosen class fills at least one
  tile, the remaining tiles repeat chosen classes, positions are shuffled, and each tile is a
  random image of its class. Train mosaics use only training images and test mosaics only test
  images; one mosaic per source image in each split, drawn from fixed seeds (``MOSAIC_SEEDS``),
  so the set is the same on every machine: ``digits-mosaic`` has 1,438 train and 359 test mosaics.
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import files
from ..errors import ArchbenchError
from .imagefolder import decode_images
from .splits import random_split

CSV_PREFIX = "csv:"
MOSAIC_PREFIX = "mosaic:"
MOSAIC_ALIASES = {"digits-mosaic": "mosaic:digits"}
MOSAIC_TILE = 16  # 2x2 tiles of 16x16 make a 32x32 mosaic, the study networks' input
MOSAIC_MAX_CLASSES = 4
MOSAIC_SEEDS = {"train": 1600, "test": 1601}
CSV_TEST_FRACTION = 0.2
CSV_SPLIT_SEED = 0
CSV_SPLITS = ("train", "test")
CSV_CACHE_FORMAT = "archbench-csv-1"


@dataclass(frozen=True)
class CsvLayout:
    """Which CSV columns hold the image path, the labels and (optionally) the split."""

    image_column: str = "image"
    labels_column: str = "labels"
    split_column: str = "split"  # used when the CSV has it; rows without one split 80/20
    separator: str = ";"


class MultiLabelSets(NamedTuple):
    """A multi-label source's two splits before validation hold-out: uint8 images and targets."""

    labels: list[str]
    train_images: torch.Tensor
    train_targets: torch.Tensor  # uint8 (N, K) multi-hot
    test_images: torch.Tensor
    test_targets: torch.Tensor
    identity: str  # what the training statistics depend on


def multi_hot(label_sets: list[list[int]], num_labels: int) -> torch.Tensor:
    """Label index lists -> uint8 ``(N, num_labels)`` with a 1 at each listed label."""
    targets = torch.zeros((len(label_sets), num_labels), dtype=torch.uint8)
    for row, indices in enumerate(label_sets):
        targets[row, list(indices)] = 1
    return targets


# --- mosaics -----------------------------------------------------------------------------------


def make_mosaics(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, count: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` 2x2 mosaics of ``images`` (uint8 ``(N, C, H, W)``) and their multi-hot targets.

    A pure function of its arguments: the draws come from ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    per_class = np.bincount(labels_np, minlength=num_classes)
    present = np.flatnonzero(per_class)
    if present.size == 0:
        raise ArchbenchError("cannot build mosaics from a split with no images")
    tiles = F.interpolate(
        images.float(), size=(MOSAIC_TILE, MOSAIC_TILE), mode="bilinear", antialias=True
    )
    tiles = tiles.round_().clamp_(0, 255).to(torch.uint8)
    # Each row: a random order of the present classes; its first k are the mosaic's classes.
    k = rng.integers(1, min(MOSAIC_MAX_CLASSES, present.size) + 1, size=count)
    shuffled = rng.permuted(np.tile(present, (count, 1)), axis=1)
    slot = np.arange(4)
    source_slot = np.where(slot < k[:, None], slot, rng.integers(0, k[:, None], size=(count, 4)))
    tile_classes = rng.permuted(np.take_along_axis(shuffled, source_slot, axis=1), axis=1)
    # A random image of each tile's class: its rank among that class's images, then its index.
    by_class = np.argsort(labels_np, kind="stable")
    first = np.concatenate([[0], np.cumsum(per_class)[:-1]])
    rank = rng.integers(0, per_class[tile_classes])
    picks = by_class[first[tile_classes] + rank]
    targets_np = np.zeros((count, num_classes), dtype=np.uint8)
    targets_np[np.arange(count)[:, None], shuffled] = np.arange(present.size) < k[:, None]
    targets = torch.from_numpy(targets_np)
    grid = tiles[torch.from_numpy(picks)]  # (count, 4, C, 16, 16)
    top = torch.cat([grid[:, 0], grid[:, 1]], dim=3)
    bottom = torch.cat([grid[:, 2], grid[:, 3]], dim=3)
    return torch.cat([top, bottom], dim=2).contiguous(), targets


def mosaic_sets(
    classes: list[str],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    identity: str,
) -> MultiLabelSets:
    """Mosaics of a single-label set's train and test splits, one per source image."""
    built = {
        split: make_mosaics(images, labels, len(classes), len(labels), MOSAIC_SEEDS[split])
        for split, (images, labels) in (("train", train), ("test", test))
    }
    return MultiLabelSets(
        labels=list(classes),
        train_images=built["train"][0],
        train_targets=built["train"][1],
        test_images=built["test"][0],
        test_targets=built["test"][1],
        identity=f"mosaic-1:{identity}",
    )


# --- CSV ---------------------------------------------------------------------------------------


class _CsvRows(NamedTuple):
    paths: list[str]
    label_names: list[list[str]]
    splits: list[str]


def load_csv(path: Path, layout: CsvLayout, cache_dir: Path) -> MultiLabelSets:
    """Read a ``csv:PATH`` dataset: parse and check every row, then decode (or reuse) images."""
    csv_path = Path(path).expanduser()
    if not csv_path.is_file():
        raise ArchbenchError(f"CSV dataset {csv_path} does not exist or is not a file")
    csv_path = csv_path.resolve()
    rows = _read_rows(csv_path, layout)
    train_rows = [i for i, split in enumerate(rows.splits) if split == "train"]
    test_rows = [i for i, split in enumerate(rows.splits) if split == "test"]
    if not train_rows or not test_rows:
        raise ArchbenchError(
            f"{csv_path} needs rows in both splits; it has {len(train_rows)} train and "
            f"{len(test_rows)} test rows"
        )
    vocabulary = sorted({name for i in train_rows for name in rows.label_names[i]})
    index = {name: position for position, name in enumerate(vocabulary)}
    unseen = sorted({name for i in test_rows for name in rows.label_names[i]} - set(index))
    if unseen:
        shown = ", ".join(repr(name) for name in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
        raise ArchbenchError(
            f"{csv_path}: label {shown} appears only in test rows; no network can learn a "
            "label it never sees in training"
        )
    key = _cache_key(csv_path, rows.paths)
    images = _decode_cached(key, rows.paths, cache_dir)
    targets = multi_hot([[index[n] for n in names] for names in rows.label_names], len(index))
    train_idx, test_idx = torch.tensor(train_rows), torch.tensor(test_rows)
    return MultiLabelSets(
        labels=vocabulary,
        train_images=images[train_idx],
        train_targets=targets[train_idx],
        test_images=images[test_idx],
        test_targets=targets[test_idx],
        identity=f"csv:{key}",
    )


def _read_rows(csv_path: Path, layout: CsvLayout) -> _CsvRows:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            columns = list(reader.fieldnames or [])
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ArchbenchError(f"cannot read CSV {csv_path}: {error}") from None
    for role, name in (("image", layout.image_column), ("labels", layout.labels_column)):
        if name not in columns:
            raise ArchbenchError(
                f"{csv_path} has no {role} column {name!r} (columns: {', '.join(columns) or '-'})"
            )
    has_split = layout.split_column in columns
    if not has_split and layout.split_column != CsvLayout.split_column:
        raise ArchbenchError(
            f"{csv_path} has no split column {layout.split_column!r} "
            f"(columns: {', '.join(columns)})"
        )
    if not records:
        raise ArchbenchError(f"{csv_path} has a header but no rows")
    paths, label_names, splits = [], [], []
    for line, record in enumerate(records, start=2):  # line 1 is the header
        cell = (record.get(layout.image_column) or "").strip()
        if not cell:
            raise ArchbenchError(f"{csv_path} line {line}: empty {layout.image_column!r} cell")
        image = Path(cell).expanduser()
        image = image if image.is_absolute() else csv_path.parent / image
        if not image.is_file():
            raise ArchbenchError(f"{csv_path} line {line}: image {cell!r} not found ({image})")
        paths.append(str(image))
        text = record.get(layout.labels_column) or ""
        label_names.append(sorted({name.strip() for name in text.split(layout.separator)} - {""}))
        if has_split:
            split = (record.get(layout.split_column) or "").strip().lower()
            if split not in CSV_SPLITS:
                raise ArchbenchError(
                    f"{csv_path} line {line}: split {split!r} is not one of {', '.join(CSV_SPLITS)}"
                )
            splits.append(split)
    if not has_split:
        _, test = random_split(len(paths), CSV_TEST_FRACTION, CSV_SPLIT_SEED)
        held = set(test.tolist())
        splits = ["test" if i in held else "train" for i in range(len(paths))]
    return _CsvRows(paths, label_names, splits)


def _cache_key(csv_path: Path, paths: list[str]) -> str:
    """``<csv hash>-<content hash>``: the CSV's location, then its bytes and every image's stat."""
    content = hashlib.sha256(f"{CSV_CACHE_FORMAT}\0{csv_path}\0".encode())
    content.update(csv_path.read_bytes())
    for image in paths:
        stat = os.stat(image)
        content.update(f"\0{image}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    tag = hashlib.sha256(str(csv_path).encode()).hexdigest()[:12]
    return f"{tag}-{content.hexdigest()[:20]}"


def _decode_cached(key: str, paths: list[str], cache_dir: Path) -> torch.Tensor:
    """Every row's image as uint8 ``(N, 3, SIZE, SIZE)``, decoded once per CSV and image content."""
    cache_file = cache_dir / f"{key}.pt"
    if cache_file.is_file():
        try:
            saved = torch.load(cache_file, map_location="cpu", weights_only=True)
            if saved["format"] == CSV_CACHE_FORMAT and saved["images"].shape[0] == len(paths):
                return saved["images"]
        except Exception as error:  # a damaged cache is decoded again, not fatal
            warnings.warn(f"ignoring unreadable image cache {cache_file}: {error}", stacklevel=3)
    images = decode_images(paths)
    try:
        files.torch_save({"format": CSV_CACHE_FORMAT, "images": images}, cache_file)
    except OSError as error:
        warnings.warn(f"could not cache decoded images in {cache_file}: {error}", stacklevel=3)
        return images
    for stale in cache_dir.glob(f"{key.split('-')[0]}-*.pt"):
        if stale != cache_file:
            stale.unlink(missing_ok=True)
    return images
