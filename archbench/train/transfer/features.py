"""The feature cache: a frozen backbone's features, extracted once and reused by every head.

Seed 004 stored DenseNet121's 1024 pooled numbers per image and trained heads "hundreds of times
faster" on them; seed 003's "bottleneck" cache is valid only when no random distortion is
applied, since a distorted image has other features. So an entry is keyed by everything its
numbers depend on: the backbone, a hash of its weights, the pooling, the input size, a
fingerprint of the split's pixels and normalization, and the split (or the augmented copies).

Layout under the data cache (``<data_dir>/features/<backbone>-<split>-<key hash>/``):

    features.npy   float32 (N, D), or (K, N, D) for K augmented copies of the training split
    labels.npy     int64 (N,), or (N, K) multi-hot rows for a multi-label set
    manifest.json  the key, shapes, bytes, extraction seconds and images/s, versions

Entries are written into a temporary sibling folder, synced, and renamed into place, so a reader
never sees half an entry; arrays are opened with ``mmap_mode="r"``. A process that misses a key
holds that key's lock (``.<entry>.lock`` beside it, :mod:`archbench.locks`) while it extracts;
another process missing the same key waits, then finds the finished entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ... import files
from ...data import BatchLoader, Split
from ...data.loader import epoch_seed
from ...errors import ArchbenchError
from ...locks import DirectoryLock
from ..rundir import slug
from .backbone import FeatureExtractor

MANIFEST = "manifest.json"
FEATURES = "features.npy"
LABELS = "labels.npy"
FORMAT = "archbench-features-1"
EXTRACT_BATCH = 256


@dataclass(frozen=True)
class FeatureKey:
    """Everything a cache entry's numbers depend on; its hash names the entry."""

    backbone: str
    weights_sha256: str  # of the extractor's own tensors, so random init is keyed too
    pooling: str
    input_size: int
    dataset: str
    dataset_fingerprint: str
    split: str
    augment: str = "none"  # the augmentation of the copies ("none" for plain features)
    copies: int = 1
    seed: int = 0  # seeds the augmented copies; irrelevant without augmentation

    def __post_init__(self) -> None:
        # Plain features do not depend on the seed: a head run's seed must not key them apart
        # from the seedless ``features``/``retrieval`` lookups of the same backbone.
        if self.augment == "none":
            object.__setattr__(self, "seed", 0)

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def folder_name(self) -> str:
        return f"{slug(self.backbone)}-{self.split}-{self.digest()}"


@dataclass
class CachedFeatures:
    """One cache entry, opened: memory-mapped arrays and the manifest."""

    path: Path
    features: np.ndarray  # (N, D) or (K, N, D), read-only memory map
    labels: np.ndarray
    manifest: dict
    hit: bool  # True when the entry was already there

    def tensors(self, copy: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """In-memory float32 features (one augmented copy if given) and int64 labels."""
        array = self.features if copy is None else self.features[copy]
        return torch.from_numpy(np.array(array)), torch.from_numpy(np.array(self.labels))


def dataset_fingerprint(split: Split, mean, std) -> str:
    """A hash of the split's pixels, labels and normalization: what the features were fed."""
    digest = hashlib.sha256()
    digest.update(split.images.contiguous().numpy().tobytes())
    digest.update(split.labels.contiguous().numpy().tobytes())
    digest.update(json.dumps([list(map(float, mean)), list(map(float, std))]).encode())
    return digest.hexdigest()


def features_dir(data_dir: Path) -> Path:
    return Path(data_dir).expanduser() / "features"


def open_entry(data_dir: Path, key: FeatureKey) -> CachedFeatures | None:
    """The entry for ``key`` if a complete one exists, else None."""
    path = features_dir(data_dir) / key.folder_name()
    try:
        manifest = files.read_json(path / MANIFEST)
        if manifest.get("format") != FORMAT or manifest.get("key") != asdict(key):
            return None
        features = np.load(path / FEATURES, mmap_mode="r")
        labels = np.load(path / LABELS, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if list(features.shape) != manifest["shape"] or features.dtype != np.float32:
        return None
    return CachedFeatures(path, features, labels, manifest, hit=True)


@torch.inference_mode()
def extract(
    extractor: FeatureExtractor,
    split: Split,
    *,
    mean,
    std,
    device: torch.device | str = "cpu",
    augment: str = "none",
    copy: int = 0,
    seed: int = 0,
    batch_size: int = EXTRACT_BATCH,
    channels_last: bool = False,
) -> torch.Tensor:
    """``(N, D)`` float32 features of ``split`` in order (augmented copy ``copy`` if asked)."""
    extractor.eval()
    loader = BatchLoader(
        split, batch_size=batch_size, mean=mean, std=std, shuffle=False, augment=augment,
        seed=seed, device=device, channels_last=channels_last,
    )  # fmt: skip
    loader.set_epoch(copy)
    parts = [extractor(images).float().cpu() for images, _ in loader]
    return torch.cat(parts)


def cached_features(
    extractor: FeatureExtractor,
    split: Split,
    key: FeatureKey,
    *,
    data_dir: Path,
    mean,
    std,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> CachedFeatures:
    """The entry for ``key``: opened if present (a hit), else extracted and stored (a miss).

    The extraction holds the key's lock: a second process missing the same key waits for it
    and then opens the finished entry instead of extracting it again.
    """
    entry = open_entry(data_dir, key)
    if entry is not None:
        return entry
    path = features_dir(data_dir) / key.folder_name()
    lock = DirectoryLock(_writable(path.parent), "feature extraction", name=f".{path.name}.lock")
    with lock.acquire(wait=None):
        entry = open_entry(data_dir, key)  # extracted by the process we waited for
        if entry is not None:
            return entry
        array, manifest = _extract_entry(
            lambda copy: extract(
                extractor,
                split,
                mean=mean,
                std=std,
                device=device,
                augment=key.augment,
                copy=copy,
                seed=key.seed,
                channels_last=channels_last,
            ),
            key,
            images=len(split) * key.copies,
        )
        manifest["source"] = extractor.source
        _store(path, array, split.labels.numpy(), manifest)
    stored = open_entry(data_dir, key)
    if stored is None:
        raise ArchbenchError(f"feature cache entry {path} could not be read back")
    stored.hit = False
    return stored


def _writable(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArchbenchError(
            f"feature cache {directory} is not writable ({error.strerror})"
        ) from None
    return directory


def _extract_entry(
    extract_copy: Callable[[int], torch.Tensor], key: FeatureKey, *, images: int
) -> tuple[np.ndarray, dict]:
    """Every copy's features as one array, and the manifest that describes them."""
    start = time.perf_counter()
    copies = [extract_copy(copy) for copy in range(key.copies)]
    seconds = time.perf_counter() - start
    array = (copies[0] if key.augment == "none" else torch.stack(copies)).numpy()
    manifest = {
        "format": FORMAT,
        "key": asdict(key),
        "shape": list(array.shape),
        "dtype": "float32",
        "feature_dim": int(array.shape[-1]),
        "images": images,
        "bytes": int(array.nbytes),
        "extraction_seconds": round(seconds, 4),
        "images_per_second": round(images / max(seconds, 1e-9), 1),
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return array, manifest


def _store(path: Path, features: np.ndarray, labels: np.ndarray, manifest: dict) -> None:
    """Publish a complete entry: write a temporary sibling, sync it, rename it into place.

    Called with the key's lock held, so no other archbench process writes ``path`` meanwhile;
    an older or foreign entry under that name is moved aside first (a folder cannot be renamed
    over a non-empty one) and removed after.
    """
    unique = f"{os.getpid()}.{time.time_ns()}"
    staging = path.parent / f".{path.name}.{unique}.tmp"
    try:
        staging.mkdir()
    except OSError as error:
        raise ArchbenchError(
            f"feature cache {path.parent} is not writable ({error.strerror})"
        ) from None
    retired = path.parent / f".{path.name}.{unique}.old"
    try:
        _save_synced(staging / FEATURES, features.astype(np.float32, copy=False))
        _save_synced(staging / LABELS, labels.astype(np.int64, copy=False))
        files.write_json(staging / MANIFEST, manifest)  # last: an entry is whole once it has one
        files.fsync_directory(staging)
        if path.exists():
            os.replace(path, retired)
        os.replace(staging, path)
        files.fsync_directory(path.parent)
    finally:
        for leftover in (staging, retired):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def _save_synced(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as stream:
        np.save(stream, array)
        stream.flush()
        os.fsync(stream.fileno())


class FeatureBatches:
    """Batches of cached features in exactly the order :class:`BatchLoader` gives images.

    Same ``(seed, epoch)`` permutation, so a head trained from the cache sees the same batches
    as one trained through the frozen backbone. With K augmented copies, epoch ``e`` reads copy
    ``e mod K``.
    """

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.features = features.to(self.device)  # (N, D) or (K, N, D)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-int(self.labels.numel()) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        n = int(self.labels.numel())
        order = torch.randperm(n, generator=generator).to(self.device) if self.shuffle else None
        features = self.features
        if features.dim() == 3:
            features = features[self.epoch % features.shape[0]]
        for batch in range(len(self)):
            start, stop = batch * self.batch_size, min((batch + 1) * self.batch_size, n)
            if order is None:
                yield features[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]
                yield features.index_select(0, index), self.labels.index_select(0, index)
