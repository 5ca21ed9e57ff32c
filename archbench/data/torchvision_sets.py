"""torchvision's dataset files (CIFAR-10/100, MNIST, Fashion-MNIST): found, unpacked or fetched.

Local files and archives are used first, with no network; a download has a socket timeout and a
bounded name lookup, so an offline machine fails in seconds with a message naming the directory
and the files expected.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import ArchbenchError

DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation (and for resolving the host), not the whole file


class TorchvisionImages(NamedTuple):
    """A set's splits as uint8 ``(N, C, H, W)`` at their native size, with int64 labels."""

    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    @property
    def channels(self) -> int:
        return int(self.test_images.shape[1])


def load_torchvision_set(name: str, data_dir: Path, *, download: bool) -> TorchvisionImages:
    """``name`` (a key of ``TORCHVISION_SETS``) from ``data_dir``, downloading if allowed."""
    spec = TORCHVISION_SETS[name]
    train = _torchvision_split(name, spec, data_dir, train=True, download=download)
    test = _torchvision_split(name, spec, data_dir, train=False, download=download)
    if not all(getattr(split, "release_checksums", True) for split in (train, test)):
        warnings.warn(
            f"{name} in {data_dir}: files differ from the official release's (md5), e.g. an "
            "archive rebuilt by benchmarks/make_cifar_archive.py; reading them as they are",
            stacklevel=3,
        )
    return TorchvisionImages(
        list(train.classes),
        *_to_tensors(train.data, train.targets, spec.grayscale),
        *_to_tensors(test.data, test.targets, spec.grayscale),
    )


def _to_tensors(data, targets, grayscale: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's arrays -> uint8 (N, C, H, W): CIFAR is NHWC, MNIST 28x28 grayscale."""
    images = torch.as_tensor(data)
    images = images[:, None] if grayscale else images.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(targets, dtype=torch.int64).contiguous()


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


TORCHVISION_SETS = {
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
    """The dataset from the files on disk; None when torchvision finds them missing.

    CIFAR files whose md5 differs from the release's (an archive rebuilt by
    :mod:`.cifar_archive`) are read by torchvision's own reader with its checksums dropped,
    marked ``release_checksums = False`` (the caller warns); a damaged file still fails when
    its pickle is read.
    """
    try:
        try:
            return dataset_cls(root, train=train, download=False)
        except RuntimeError:  # torchvision's "Dataset not found or corrupted"
            if not hasattr(dataset_cls, "train_list"):
                return None
        try:
            dataset = _without_checksums(dataset_cls)(root, train=train, download=False)
        except RuntimeError:  # a file is missing
            return None
        dataset.release_checksums = False
        return dataset
    except Exception as error:  # present but unreadable (a damaged file)
        reason = " ".join(f"{type(error).__name__} {error}".split())
        raise ArchbenchError(
            f"cannot read dataset {name!r} from {root} ({reason}); its files look damaged: "
            "delete them to download again"
        ) from None


def _without_checksums(dataset_cls):
    """torchvision's CIFAR reader with its pinned md5 sums dropped (present files pass)."""
    return type(
        f"Unchecked{dataset_cls.__name__}",
        (dataset_cls,),
        {
            "train_list": [[file, None] for file, _ in dataset_cls.train_list],
            "test_list": [[file, None] for file, _ in dataset_cls.test_list],
            "meta": {**dataset_cls.meta, "md5": None},
        },
    )


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
