"""CIFAR archives in the release's python format, written from other copies of the images.

Machines without network access cannot fetch ``cifar-10-python.tar.gz``, but they may hold the
same images in another form (the shared CIFAR-10 JPEGs in ImageFolder layout). Writing them back
into the release's format lets the user's own command (``--dataset cifar10 --data-dir D``) run,
through torchvision's reader, exactly as it would on the downloaded archive.

The format (Krizhevsky's python version, as ``torchvision.datasets.CIFAR10``/``CIFAR100`` read
it): a gzipped tar holding ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``,
``test_batch`` and ``batches.meta``, or ``cifar-100-python/`` with ``train``, ``test`` and
``meta``; each a pickle of a dict whose ``data`` is a uint8
``(N, 3072)`` array, each row the red, green then blue 32x32 planes. Rows are shuffled with a
fixed seed, as the release's are, and each row's ``filenames`` entry names its source image
(``<class>/<file>``) so any row can be traced back. The files are not the release's bytes, so
their md5 sums differ from the ones torchvision pins; :mod:`.torchvision_sets` accepts them.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import files
from ..errors import ArchbenchError
from .imagefolder import SIZE, decode_images, list_split

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
TRAIN_BATCHES = 5  # data_batch_1..5: 10,000 images each for the full set
PICKLE_PROTOCOL = 4  # raw bytes for the pixels (2 would inflate them 1.45x); Python >= 3.4
_ROW = 3 * SIZE * SIZE  # 3072 values per image
_MTIME = 0  # archive members' time: the same images give the same archive bytes


class CifarSplit(NamedTuple):
    """One split as the archive stores it: uint8 ``(N, 3, 32, 32)`` images, labels, names."""

    images: np.ndarray
    labels: np.ndarray  # fine labels for CIFAR-100
    filenames: list[str]
    coarse_labels: np.ndarray | None = None  # CIFAR-100 only

    def shuffled(self, seed: int | None) -> CifarSplit:
        """The rows in a seeded random order (None: as they are)."""
        if seed is None:
            return self
        order = np.random.default_rng(seed).permutation(len(self.labels))
        coarse = None if self.coarse_labels is None else self.coarse_labels[order]
        names = [self.filenames[i] for i in order]
        return CifarSplit(self.images[order], self.labels[order], names, coarse)


def imagefolder_splits(root: Path) -> tuple[list[str], CifarSplit, CifarSplit]:
    """``root/train`` and ``root/test`` (ImageFolder layout) decoded as archbench decodes them.

    Images go through :func:`~archbench.data.imagefolder.decode_images`, the decoder of
    ``--dataset imagefolder:ROOT``, so the archive holds exactly the pixels that dataset does.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ArchbenchError(f"image folder {root} does not exist or is not a directory")
    root = root.resolve()
    listings = {split: list_split(root, split) for split in ("train", "test")}
    classes = listings["train"].classes
    if listings["test"].classes != classes:
        raise ArchbenchError(
            f"train and test class folders differ in {root}: "
            f"{', '.join(classes)} against {', '.join(listings['test'].classes)}"
        )
    splits = []
    for split, listing in listings.items():
        images = decode_images(listing.paths).numpy()
        names = [os.path.relpath(path, root / split) for path in listing.paths]
        splits.append(CifarSplit(images, np.asarray(listing.labels, dtype=np.int64), names))
    return classes, splits[0], splits[1]


def write_cifar10(
    out_dir: Path, classes: Sequence[str], train: CifarSplit, test: CifarSplit
) -> Path:
    """``out_dir/cifar-10-python.tar.gz`` from the splits, in their order; returns its path."""
    _check_split("train", train, len(classes), min_rows=TRAIN_BATCHES)
    _check_split("test", test, len(classes), min_rows=1)
    members = {}
    for number, rows in enumerate(np.array_split(np.arange(len(train.labels)), TRAIN_BATCHES)):
        label = f"training batch {number + 1} of {TRAIN_BATCHES}"
        members[f"data_batch_{number + 1}"] = _batch(train, rows, label)
    members["test_batch"] = _batch(test, np.arange(len(test.labels)), "testing batch 1 of 1")
    members["batches.meta"] = {
        "num_cases_per_batch": int(np.ceil(len(train.labels) / TRAIN_BATCHES)),
        "label_names": list(classes),
        "num_vis": _ROW,
    }
    return _write_archive(Path(out_dir) / CIFAR10_ARCHIVE, CIFAR10_FOLDER, members)


def write_cifar100(
    out_dir: Path,
    fine_names: Sequence[str],
    coarse_names: Sequence[str],
    train: CifarSplit,
    test: CifarSplit,
) -> Path:
    """``out_dir/cifar-100-python.tar.gz``: ``train``, ``test``, ``meta`` with both name lists."""
    for split_name, split in (("train", train), ("test", test)):
        _check_split(split_name, split, len(fine_names), min_rows=1)
        coarse = split.coarse_labels
        if coarse is None or len(coarse) != len(split.labels):
            raise ArchbenchError(f"CIFAR-100 {split_name} split needs one coarse label per image")
        if coarse.min() < 0 or coarse.max() >= len(coarse_names):
            raise ArchbenchError(
                f"CIFAR-100 {split_name} coarse labels must lie in 0..{len(coarse_names) - 1}"
            )
    members = {
        "train": _batch(train, np.arange(len(train.labels)), "training batch 1 of 1"),
        "test": _batch(test, np.arange(len(test.labels)), "testing batch 1 of 1"),
        "meta": {"fine_label_names": list(fine_names), "coarse_label_names": list(coarse_names)},
    }
    return _write_archive(Path(out_dir) / CIFAR100_ARCHIVE, CIFAR100_FOLDER, members)


def cifar10_from_imagefolder(root: Path, out_dir: Path, *, shuffle_seed: int | None = 0) -> Path:
    """Write ``out_dir/cifar-10-python.tar.gz`` from an ImageFolder of 32x32 images."""
    classes, train, test = imagefolder_splits(root)
    train, test = train.shuffled(shuffle_seed), test.shuffled(shuffle_seed)
    return write_cifar10(out_dir, classes, train, test)


def _check_split(name: str, split: CifarSplit, num_classes: int, *, min_rows: int) -> None:
    images, labels = split.images, split.labels
    if images.dtype != np.uint8 or images.shape[1:] != (3, SIZE, SIZE):
        raise ArchbenchError(
            f"{name} images must be uint8 (N, 3, {SIZE}, {SIZE}), got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    if not (len(images) == len(labels) == len(split.filenames)):
        raise ArchbenchError(f"{name}: images, labels and filenames differ in number")
    if len(labels) < min_rows:
        raise ArchbenchError(f"{name} split needs at least {min_rows} images, got {len(labels)}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ArchbenchError(f"{name} labels must lie in 0..{num_classes - 1}")


def _batch(split: CifarSplit, rows: np.ndarray, batch_label: str) -> dict:
    """One pickled batch's dict, keys and types as the release's."""
    entry = {
        "batch_label": batch_label,
        "labels" if split.coarse_labels is None else "fine_labels": [
            int(label) for label in split.labels[rows]
        ],
        "data": np.ascontiguousarray(split.images[rows].reshape(len(rows), _ROW)),
        "filenames": [split.filenames[i] for i in rows],
    }
    if split.coarse_labels is not None:
        entry["coarse_labels"] = [int(label) for label in split.coarse_labels[rows]]
    return entry


def _write_archive(path: Path, folder: str, members: dict[str, dict]) -> Path:
    """A gzipped tar of ``folder/<name>`` pickles, written atomically, byte-reproducible."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=_MTIME) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        directory = tarfile.TarInfo(folder)
        directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, _MTIME
        tar.addfile(directory)
        for name, content in members.items():
            data = pickle.dumps(content, protocol=PICKLE_PROTOCOL)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, _MTIME
            tar.addfile(info, io.BytesIO(data))
    files.write_bytes(path, buffer.getvalue())
    return path
