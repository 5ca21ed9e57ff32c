"""Dataset loading: every source ends as uint8 ``(N, C, H, W)`` tensors in memory.

Sources deliver their native shape (:data:`NATIVE_SHAPES`); :func:`load_data` fits it to
``DataConfig.input_shape`` (see :mod:`archbench.data.shapes`). See the package docstring
(:mod:`archbench.data`) for what each dataset is and how it is split.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import files, paths
from ..errors import ArchbenchError
from .imagefolder import SIZE as IMAGEFOLDER_SIZE
from .imagefolder import load_imagefolder
from .multilabel import (
    CSV_PREFIX,
    MOSAIC_ALIASES,
    MOSAIC_PREFIX,
    MOSAIC_TILE,
    CsvLayout,
    MultiLabelSets,
    load_csv,
    mosaic_sets,
)
from .shapes import Shape, fit_images, parse_shape
from .splits import Split, channel_stats, nested_subset, random_split, stratified_split
from .torchvision_sets import load_torchvision_set

SINGLE_LABEL_NAMES = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist")
DATASET_NAMES = (*SINGLE_LABEL_NAMES, *MOSAIC_ALIASES)
IMAGEFOLDER_PREFIX = "imagefolder:"
PREFIXES = (IMAGEFOLDER_PREFIX, CSV_PREFIX, MOSAIC_PREFIX)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
STATS_FORMAT = "archbench-stats-1"
STUDY_SHAPE: Shape = (3, 32, 32)  # what the study's networks take, and the default
MNIST_PAD_TO = 32  # the study's 32x32 MNIST: 28x28 padded with background, not resized
# (channels, height, width) each source holds; digits are the 8x8 images upscaled x4.
NATIVE_SHAPES: dict[str, Shape] = {
    "digits": (1, 32, 32),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "imagefolder": (3, IMAGEFOLDER_SIZE, IMAGEFOLDER_SIZE),
}


def default_data_dir() -> Path:
    """``$ARCHBENCH_DATA`` if set, else ``data`` in the cache root (:mod:`archbench.paths`)."""
    return paths.data_dir()


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load, the ``(C, H, W)`` to deliver, and how to hold out validation.

    ``input_shape`` None keeps the dataset's native shape (:func:`dataset_shape`).
    """

    dataset: str = "digits"
    data_dir: Path | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    download: bool = True
    input_shape: Shape | None = STUDY_SHAPE
    train_limit: int | None = None  # keep this many training images (a learning curve's N)
    csv_layout: CsvLayout = CsvLayout()


@dataclass
class ImageData:
    """A loaded dataset: class names, the three splits, and the normalization to apply.

    ``mean`` and ``std`` have one value per channel of the delivered images; ``native_shape``
    is what the source holds, before fitting to the network's input.
    """

    name: str
    classes: list[str]
    train: Split
    val: Split | None
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_augment: str
    native_shape: Shape = STUDY_SHAPE

    @property
    def num_classes(self) -> int:
        """Classes, or for a multi-label set the number of labels (one output each)."""
        return len(self.classes)

    @property
    def multilabel(self) -> bool:
        return self.train.multilabel

    @property
    def shape(self) -> Shape:
        """``(C, H, W)`` of the delivered images."""
        return tuple(self.test.images.shape[1:])


@dataclass
class _Loaded:
    """What a source hands back before the validation split and the statistics."""

    classes: list[str]
    train: Split
    test: Split
    default_augment: str
    identity: str  # what the training split's statistics depend on, besides the val split
    fixed_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # for 3 channels
    pad_to: int | None = None  # a square size reached by zero-padding instead of resizing


def load_data(config: DataConfig) -> ImageData:
    """Load ``config.dataset`` into memory, hold out the validation split, pick mean and std."""
    fraction = config.val_fraction
    if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1):
        raise ArchbenchError(f"val_fraction must be in [0, 1), got {fraction!r}")
    limit = config.train_limit
    if limit is not None and not (isinstance(limit, int) and limit > 0):
        raise ArchbenchError(f"train_limit must be a positive integer, got {limit!r}")
    data_dir = Path(config.data_dir).expanduser() if config.data_dir else default_data_dir()
    name = resolve_dataset_name(config.dataset)
    loaded = _load_source(name, data_dir, config)
    native = tuple(loaded.test.images.shape[1:])
    shape = native if config.input_shape is None else parse_shape(config.input_shape)
    fit = {"pad_to": loaded.pad_to, "cache_dir": data_dir / "resized"}
    loaded.train = Split(
        fit_images(loaded.train.images, shape, cache_key=f"{loaded.identity}:train", **fit),
        loaded.train.labels,
    )
    loaded.test = Split(
        fit_images(loaded.test.images, shape, cache_key=f"{loaded.identity}:test", **fit),
        loaded.test.labels,
    )

    train, val = loaded.train, None
    if fraction > 0:
        if train.multilabel:
            kept, held = random_split(len(train), fraction, config.split_seed)
        else:
            kept, held = stratified_split(train.labels, fraction, config.split_seed)
        if held.numel() == 0:
            raise ArchbenchError(
                f"val_fraction {fraction} holds out no image of {name}'s {len(train)} training "
                "images (it rounds per class); use a larger fraction or 0 for no validation split"
            )
        train, val = train.subset(kept), train.subset(held)
    if limit is not None:
        if limit > len(train):
            raise ArchbenchError(
                f"train_limit {limit} exceeds the {len(train)} training images of {name}"
            )
        train = train.subset(nested_subset(len(train), limit, config.split_seed))
    if loaded.fixed_stats is not None and shape[0] == len(loaded.fixed_stats[0]):
        mean, std = loaded.fixed_stats
    else:
        identity = loaded.identity if shape == STUDY_SHAPE else f"{loaded.identity}@{shape}"
        mean, std = _cached_stats(data_dir, identity, fraction, config.split_seed, train)
    return ImageData(
        name=name,
        classes=list(loaded.classes),
        train=train,
        val=val,
        test=loaded.test,
        mean=tuple(mean),
        std=tuple(std),
        default_augment=loaded.default_augment,
        native_shape=native,
    )


def _load_source(name: str, data_dir: Path, config: DataConfig) -> _Loaded:
    """A source at its native shape (a mosaic's tiles come from its source's native images)."""
    name = MOSAIC_ALIASES.get(name, name)
    if name.startswith(IMAGEFOLDER_PREFIX):
        return _load_imagefolder(Path(name[len(IMAGEFOLDER_PREFIX) :]), data_dir)
    if name.startswith(CSV_PREFIX):
        path = Path(name[len(CSV_PREFIX) :])
        sets = load_csv(path, config.csv_layout, data_dir / "csv-cache")
        return _multilabel_loaded(sets, "crop-flip")
    if name.startswith(MOSAIC_PREFIX):
        source = _load_source(name[len(MOSAIC_PREFIX) :], data_dir, config)
        if source.train.multilabel:
            raise ArchbenchError(f"{name}: mosaics are made from a single-label dataset")
        splits = (source.train, source.test)
        if source.pad_to is not None:  # MNIST's tiles are the study's padded 32x32 digits
            square = (source.train.images.shape[1], source.pad_to, source.pad_to)
            splits = tuple(
                Split(fit_images(split.images, square, pad_to=source.pad_to), split.labels)
                for split in splits
            )
        sets = mosaic_sets(
            source.classes,
            (splits[0].images, splits[0].labels),
            (splits[1].images, splits[1].labels),
            source.identity,
        )
        return _multilabel_loaded(sets, source.default_augment, source.fixed_stats)
    if name == "digits":
        return _load_digits()
    return _load_torchvision(name, data_dir, download=config.download)


def _multilabel_loaded(sets: MultiLabelSets, augment: str, fixed_stats=None) -> _Loaded:
    return _Loaded(
        classes=sets.labels,
        train=Split(sets.train_images, sets.train_targets),
        test=Split(sets.test_images, sets.test_targets),
        default_augment=augment,
        identity=sets.identity,
        fixed_stats=fixed_stats,
    )


def dataset_shape(dataset: str) -> Shape:
    """The ``(C, H, W)`` a dataset holds natively, known without loading it."""
    name = MOSAIC_ALIASES.get(resolve_dataset_name(dataset), resolve_dataset_name(dataset))
    if name.startswith(MOSAIC_PREFIX):  # 2x2 tiles of the source's channels
        channels = dataset_shape(name[len(MOSAIC_PREFIX) :])[0]
        return channels, 2 * MOSAIC_TILE, 2 * MOSAIC_TILE
    if name.startswith((IMAGEFOLDER_PREFIX, CSV_PREFIX)):  # decoded by the image folders' code
        return NATIVE_SHAPES["imagefolder"]
    return NATIVE_SHAPES[name]


def dataset_pad_to(dataset: str) -> int | None:
    """The square size a dataset reaches by zero-padding instead of resizing (MNIST's 28 -> 32),
    known without loading it; training, the profiler and the server all fit images with it."""
    name = resolve_dataset_name(dataset)
    return MNIST_PAD_TO if name in ("mnist", "fashion-mnist") else None


def resolve_dataset_name(dataset: str) -> str:
    """The canonical name (``"CIFAR10"`` -> ``"cifar10"``), or a clear error with a suggestion."""
    text = dataset.strip()
    lowered = text.lower()
    for prefix in PREFIXES:
        if lowered.startswith(prefix):
            rest = text[len(prefix) :]
            if not rest:
                raise ArchbenchError(f"{prefix} needs a value, e.g. {prefix}{_EXAMPLES[prefix]}")
            if prefix == MOSAIC_PREFIX:
                return prefix + resolve_dataset_name(rest)
            return prefix + rest
    if lowered in DATASET_NAMES:
        return lowered
    choices = (*DATASET_NAMES, "imagefolder:PATH", "csv:PATH", "mosaic:DATASET")
    close = difflib.get_close_matches(text.lower(), [*DATASET_NAMES, "imagefolder"], n=1)
    if text and Path(text).expanduser().is_dir():
        suggestion = f"imagefolder:{text}"
    elif close:
        suggestion = "imagefolder:PATH" if close[0] == "imagefolder" else close[0]
    else:
        suggestion = None
    hint = f"; did you mean {suggestion!r}?" if suggestion else ";"
    raise ArchbenchError(f"unknown dataset {dataset!r}{hint} choose from {', '.join(choices)}")


_EXAMPLES = {
    IMAGEFOLDER_PREFIX: "/data/my-images",
    CSV_PREFIX: "/data/labels.csv",
    MOSAIC_PREFIX: "imagefolder:/data/my-images",
}


def _cached_stats(
    data_dir: Path, identity: str, fraction: float, seed: int, train: Split
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Training-split statistics, kept in ``data_dir/stats/<key>.json`` after the first load."""
    ident = {
        "identity": identity,
        "val_fraction": fraction,
        "split_seed": seed,
        "count": len(train),
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in identity.split(":")[0])
    path = data_dir / "stats" / f"{slug}-{digest}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = files.read_json(path)
        if saved["format"] == STATS_FORMAT and saved["key"] == ident:
            mean, std = saved["mean"], saved["std"]
            if len(mean) == len(std) == train.images.shape[1]:
                return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    mean, std = channel_stats(train.images)
    record = {"format": STATS_FORMAT, "key": ident, "mean": list(mean), "std": list(std)}
    try:
        files.write_json(path, record)
    except OSError as error:
        warnings.warn(f"could not cache dataset statistics in {path}: {error}", stacklevel=3)
    return mean, std


# --- sources -----------------------------------------------------------------------------------


def _load_digits() -> _Loaded:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images).to(torch.float32) * (255 / 16)  # (N, 8, 8), 0-255
    upscaled = F.interpolate(pixels[:, None], scale_factor=4, mode="bilinear", align_corners=False)
    images = upscaled.round_().clamp_(0, 255).to(torch.uint8)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    full = Split(images, labels)
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return _Loaded(
        classes=[str(digit) for digit in range(10)],
        train=full.subset(train_idx),
        test=full.subset(test_idx),
        default_augment="crop",
        identity="digits:sklearn-8x8-bilinear-x4",
    )


def _load_imagefolder(path: Path, data_dir: Path) -> _Loaded:
    folder = load_imagefolder(path, data_dir / "imagefolder-cache")
    return _Loaded(
        classes=folder.classes,
        train=Split(folder.train_images, folder.train_labels),
        test=Split(folder.test_images, folder.test_labels),
        default_augment="crop-flip",
        identity=f"imagefolder:{folder.key}",
    )


def _load_torchvision(name: str, data_dir: Path, *, download: bool) -> _Loaded:
    source = load_torchvision_set(name, data_dir, download=download)
    cifar = source.channels == 3
    return _Loaded(
        classes=source.classes,
        train=Split(source.train_images, source.train_labels),
        test=Split(source.test_images, source.test_labels),
        default_augment="crop-flip" if cifar else "crop",
        identity=f"{name}:{data_dir.resolve()}",
        fixed_stats=(CIFAR_MEAN, CIFAR_STD) if cifar else None,
        pad_to=dataset_pad_to(name),
    )
