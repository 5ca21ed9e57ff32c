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
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import files, paths
from ..errors import ArchbenchError
from .imagefolder import SIZE as IMAGEFOLDER_SIZE
from .imagefolder import load_imagefolder
from .shapes import Shape, fit_images, parse_shape
from .torchvision_sets import load_torchvision_set

DATASET_NAMES = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist")
IMAGEFOLDER_PREFIX = "imagefolder:"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
STATS_FORMAT = "archbench-stats-1"
STUDY_SHAPE: Shape = (3, 32, 32)  # what the study's networks take, and the default
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


@dataclass
class Split:
    """One split in memory: uint8 ``(N, C, H, W)`` images and int64 ``(N,)`` labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, indices: torch.Tensor) -> Split:
        return Split(self.images.index_select(0, indices), self.labels.index_select(0, indices))


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
        return len(self.classes)

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
    data_dir = Path(config.data_dir).expanduser() if config.data_dir else default_data_dir()
    name = resolve_dataset_name(config.dataset)
    if name.startswith(IMAGEFOLDER_PREFIX):
        loaded = _load_imagefolder(Path(name[len(IMAGEFOLDER_PREFIX) :]), data_dir)
    elif name == "digits":
        loaded = _load_digits()
    else:
        loaded = _load_torchvision(name, data_dir, download=config.download)
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
        kept, held = stratified_split(train.labels, fraction, config.split_seed)
        if held.numel() == 0:
            raise ArchbenchError(
                f"val_fraction {fraction} holds out no image of {name}'s {len(train)} training "
                "images (it rounds per class); use a larger fraction or 0 for no validation split"
            )
        train, val = train.subset(kept), train.subset(held)
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


def dataset_shape(dataset: str) -> Shape:
    """The ``(C, H, W)`` a dataset holds natively, known without loading it."""
    name = resolve_dataset_name(dataset)
    return NATIVE_SHAPES["imagefolder" if name.startswith(IMAGEFOLDER_PREFIX) else name]


def resolve_dataset_name(dataset: str) -> str:
    """The canonical name (``"CIFAR10"`` -> ``"cifar10"``), or a clear error with a suggestion."""
    text = dataset.strip()
    if text[: len(IMAGEFOLDER_PREFIX)].lower() == IMAGEFOLDER_PREFIX:
        if not text[len(IMAGEFOLDER_PREFIX) :]:
            raise ArchbenchError("imagefolder: needs a path, e.g. imagefolder:/data/my-images")
        return IMAGEFOLDER_PREFIX + text[len(IMAGEFOLDER_PREFIX) :]
    if text.lower() in DATASET_NAMES:
        return text.lower()
    choices = (*DATASET_NAMES, "imagefolder:PATH")
    close = difflib.get_close_matches(text.lower(), [*DATASET_NAMES, "imagefolder"], n=1)
    if text and Path(text).expanduser().is_dir():
        suggestion = f"imagefolder:{text}"
    elif close:
        suggestion = "imagefolder:PATH" if close[0] == "imagefolder" else close[0]
    else:
        suggestion = None
    hint = f"; did you mean {suggestion!r}?" if suggestion else ";"
    raise ArchbenchError(f"unknown dataset {dataset!r}{hint} choose from {', '.join(choices)}")


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(kept, held_out)``, each sorted, holding out ``fraction`` of every class.

    Per class (in label order) a permutation seeded by ``seed`` picks ``round(fraction * n)``
    images (halves round up), at most ``n - 1`` so no class vanishes from the kept part.
    """
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for label in torch.unique(labels).tolist():
        members = (labels == label).nonzero().flatten()
        n = members.numel()
        k = min(math.floor(fraction * n + 0.5), n - 1)
        shuffled = members[torch.randperm(n, generator=generator)]
        held.append(shuffled[:k])
        kept.append(shuffled[k:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 images, on the 0-1 scale."""
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1).cpu(), minlength=256).double()
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * values.square()).sum() / total - mean.square()
        means.append(float(mean))
        std = math.sqrt(max(float(var), 0.0))
        stds.append(std if std > 0 else 1.0)  # a constant channel: leave it unscaled
    return tuple(means), tuple(stds)


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
        pad_to=None if cifar else 32,  # the study's 32x32 MNIST: 28x28 padded with background
    )
