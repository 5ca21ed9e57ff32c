"""Dataset loading: every source ends as uint8 ``(N, 3, 32, 32)`` tensors in memory.

See the package docstring (:mod:`archbench.data`) for what each dataset is and how it is split.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import files
from ..errors import ArchbenchError
from .imagefolder import load_imagefolder
from .multilabel import (
    CSV_PREFIX,
    MOSAIC_ALIASES,
    MOSAIC_PREFIX,
    CsvLayout,
    MultiLabelSets,
    load_csv,
    mosaic_sets,
)
from .splits import Split, channel_stats, nested_subset, random_split, stratified_split

SINGLE_LABEL_NAMES = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist")
DATASET_NAMES = (*SINGLE_LABEL_NAMES, *MOSAIC_ALIASES)
IMAGEFOLDER_PREFIX = "imagefolder:"
PREFIXES = (IMAGEFOLDER_PREFIX, CSV_PREFIX, MOSAIC_PREFIX)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation (and for resolving the host), not the whole file
STATS_FORMAT = "archbench-stats-1"


def default_data_dir() -> Path:
    """``$ARCHBENCH_DATA`` if set, else ``~/.cache/archbench/data``."""
    env = os.environ.get("ARCHBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "archbench" / "data"


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and how to hold out the validation split."""

    dataset: str = "digits"
    data_dir: Path | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    download: bool = True
    train_limit: int | None = None  # keep this many training images (a learning curve's N)
    csv_layout: CsvLayout = CsvLayout()


@dataclass
class ImageData:
    """A loaded dataset: class names, the three splits, and the normalization to apply."""

    name: str
    classes: list[str]
    train: Split
    val: Split | None
    test: Split
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_augment: str

    @property
    def num_classes(self) -> int:
        """Classes, or for a multi-label set the number of labels (one output each)."""
        return len(self.classes)

    @property
    def multilabel(self) -> bool:
        return self.train.multilabel


@dataclass
class _Loaded:
    """What a source hands back before the validation split and the statistics."""

    classes: list[str]
    train: Split
    test: Split
    default_augment: str
    identity: str  # what the training split's statistics depend on, besides the val split
    fixed_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None


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
    if loaded.fixed_stats is not None:
        mean, std = loaded.fixed_stats
    else:
        mean, std = _cached_stats(data_dir, loaded.identity, fraction, config.split_seed, train)
    return ImageData(
        name=name,
        classes=list(loaded.classes),
        train=train,
        val=val,
        test=loaded.test,
        mean=tuple(mean),
        std=tuple(std),
        default_augment=loaded.default_augment,
    )


def _load_source(name: str, data_dir: Path, config: DataConfig) -> _Loaded:
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
        sets = mosaic_sets(
            source.classes,
            (source.train.images, source.train.labels),
            (source.test.images, source.test.labels),
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
            if len(mean) == len(std) == 3:
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
    gray = upscaled.round_().clamp_(0, 255).to(torch.uint8)
    images = gray.expand(-1, 3, -1, -1).contiguous()
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


@dataclass(frozen=True)
class _TorchvisionSet:
    class_name: str  # in torchvision.datasets
    expected: str  # for the error message, relative to data_dir
    archives: tuple[str, ...]  # local archives that can stand in for the extracted files
    extract_to: str
    grayscale: bool


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _mnist_like(class_name: str) -> _TorchvisionSet:
    raw = f"{class_name}/raw"
    return _TorchvisionSet(
        class_name=class_name,
        expected=f"{raw}/ holding {', '.join(_MNIST_FILES)} (or the same names with .gz)",
        archives=tuple(f"{raw}/{name}.gz" for name in _MNIST_FILES),
        extract_to=raw,
        grayscale=True,
    )


_TORCHVISION_SETS = {
    "cifar10": _TorchvisionSet(
        "CIFAR10",
        "cifar-10-batches-py/ (or cifar-10-python.tar.gz)",
        ("cifar-10-python.tar.gz",),
        "",
        grayscale=False,
    ),
    "cifar100": _TorchvisionSet(
        "CIFAR100",
        "cifar-100-python/ (or cifar-100-python.tar.gz)",
        ("cifar-100-python.tar.gz",),
        "",
        grayscale=False,
    ),
    "mnist": _mnist_like("MNIST"),
    "fashion-mnist": _mnist_like("FashionMNIST"),
}


def _load_torchvision(name: str, data_dir: Path, *, download: bool) -> _Loaded:
    spec = _TORCHVISION_SETS[name]
    train = _torchvision_split(name, spec, data_dir, train=True, download=download)
    test = _torchvision_split(name, spec, data_dir, train=False, download=download)
    cifar = not spec.grayscale
    return _Loaded(
        classes=list(train.classes),
        train=_to_split(train.data, train.targets, spec.grayscale),
        test=_to_split(test.data, test.targets, spec.grayscale),
        default_augment="crop-flip" if cifar else "crop",
        identity=f"{name}:{data_dir.resolve()}",
        fixed_stats=(CIFAR_MEAN, CIFAR_STD) if cifar else None,
    )


def _to_split(data, targets, grayscale: bool) -> Split:
    """torchvision's arrays -> uint8 (N, 3, 32, 32): CIFAR is NHWC, MNIST is 28x28 grayscale."""
    images = torch.as_tensor(data)
    if grayscale:  # pad 28 -> 32 with background, replicate to 3 channels
        images = F.pad(images, (2, 2, 2, 2))[:, None].expand(-1, 3, -1, -1)
    else:
        images = images.permute(0, 3, 1, 2)
    return Split(images.contiguous(), torch.as_tensor(targets, dtype=torch.int64).contiguous())


def _torchvision_split(
    name: str, spec: _TorchvisionSet, root: Path, *, train: bool, download: bool
):
    import torchvision.datasets

    dataset_cls = getattr(torchvision.datasets, spec.class_name)
    dataset = _open_local(name, dataset_cls, root, train)
    if dataset is None and _extract_local_archives(spec, root):
        dataset = _open_local(name, dataset_cls, root, train)
    if dataset is not None:
        return dataset
    if not download:
        raise _missing(name, spec, root, "downloading is off")
    url = getattr(dataset_cls, "url", None) or dataset_cls.mirrors[0]
    try:
        _check_resolvable(url)
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return dataset_cls(root, train=train, download=True)
    except Exception as error:  # any failure to fetch is the same problem for the user
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise _missing(name, spec, root, f"download failed: {reason}") from None


def _open_local(name: str, dataset_cls, root: Path, train: bool):
    """The dataset from the files on disk; None when torchvision finds them missing."""
    try:
        return dataset_cls(root, train=train, download=False)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        return None
    except Exception as error:  # present but unreadable (a damaged file)
        reason = " ".join(f"{type(error).__name__} {error}".split())
        raise ArchbenchError(
            f"cannot read dataset {name!r} from {root} ({reason}); its files look damaged: "
            "delete them to download again"
        ) from None


def _missing(name: str, spec: _TorchvisionSet, root: Path, why: str) -> ArchbenchError:
    where = root if root.is_dir() else f"{root} (which does not exist)"
    return ArchbenchError(
        f"dataset {name!r} not found in {where}: expected {spec.expected} there ({why}); "
        "pass --data-dir DIR or set ARCHBENCH_DATA to the folder that holds it"
    )


def _extract_local_archives(spec: _TorchvisionSet, root: Path) -> bool:
    """Unpack archives already on disk (no network); True if there was anything to unpack."""
    from torchvision.datasets.utils import extract_archive

    present = [root / archive for archive in spec.archives if (root / archive).is_file()]
    for archive in present:
        try:
            extract_archive(str(archive), str(root / spec.extract_to))
        except Exception as error:  # tarfile, gzip, zlib and OS errors alike: a broken archive
            raise ArchbenchError(f"cannot extract {archive}: {error}") from None
    return bool(present)


def _check_resolvable(url: str) -> None:
    """Fail fast when the host cannot be resolved; name lookups ignore socket timeouts."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme in urllib.request.getproxies():
        return  # the proxy resolves the name
    host = urllib.parse.urlparse(url).hostname or ""
    outcome: list[BaseException] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None)
        except OSError as error:
            outcome.append(error)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(DOWNLOAD_TIMEOUT_S)
    if thread.is_alive():
        raise TimeoutError(f"could not resolve {host} within {DOWNLOAD_TIMEOUT_S:g} s")
    if outcome:
        raise OSError(f"could not resolve {host}: {outcome[0]}")


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
