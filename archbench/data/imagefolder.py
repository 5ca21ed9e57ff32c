"""Folder-per-class image datasets, decoded once and cached as uint8 tensors.

Layout (torchvision's ImageFolder): ``ROOT/train/<class>/**/<image>`` and
``ROOT/test/<class>/**/<image>``; class index = position in the sorted folder names; files in
sorted order as ImageFolder walks them. Names starting with ``.`` are ignored. Every image is
decoded to RGB; one that is not 32x32 is resized to 32x32 (bilinear, aspect ratio not kept).
The decoded tensors go to ``CACHE_DIR/<root hash>-<content hash>.pt``: the first part hashes the
resolved root, the second also every file's relative path, size and modification time, so any
change to the folder re-decodes (and replaces that root's older cache file).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .. import files
from ..errors import ArchbenchError

SPLITS = ("train", "test")
# torchvision.datasets.folder.IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SIZE = 32
CACHE_FORMAT = "archbench-imagefolder-1"
_CHUNK = 512  # files per decoding task
_FAST_MAX_BYTES = 64 * 1024  # larger JPEGs are not 32x32: PIL decodes them at reduced size
_TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision"


class FolderImages(NamedTuple):
    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    key: str  # "<root hash>-<content hash>"; names the cache file


class Listing(NamedTuple):
    classes: list[str]
    paths: list[str]  # plain strings: 60,000 Path objects cost a noticeable fraction of a second
    labels: list[int]


def load_imagefolder(path: Path, cache_dir: Path) -> FolderImages:
    """Decode ``path``'s train and test splits, or read them from ``cache_dir`` if unchanged."""
    root = Path(path).expanduser()
    if not root.exists():
        raise ArchbenchError(f"imagefolder path {root} does not exist")
    if not root.is_dir():
        raise ArchbenchError(f"imagefolder path {root} is not a directory")
    root = root.resolve()
    listings = {split: list_split(root, split) for split in SPLITS}
    train_classes, test_classes = listings["train"].classes, listings["test"].classes
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise ArchbenchError(
            f"train and test class folders differ in {root}: "
            f"only in train: {', '.join(only_train) or '-'}; "
            f"only in test: {', '.join(only_test) or '-'}"
        )
    key = _content_key(root, listings)
    cache_file = cache_dir / f"{key}.pt"
    cached = _read_cache(cache_file, listings)
    if cached is not None:
        return cached._replace(key=key)

    tensors = {}
    for split, listing in listings.items():
        tensors[f"{split}_images"] = decode_images(listing.paths)
        tensors[f"{split}_labels"] = torch.tensor(listing.labels, dtype=torch.int64)
    result = FolderImages(classes=train_classes, key=key, **tensors)
    try:
        files.torch_save(
            {"format": CACHE_FORMAT, "root": str(root), "classes": train_classes, **tensors},
            cache_file,
        )
    except OSError as error:
        warnings.warn(f"could not cache decoded images in {cache_file}: {error}", stacklevel=3)
        return result
    root_tag = key.split("-")[0]
    for stale in cache_dir.glob(f"{root_tag}-*.pt"):
        if stale != cache_file:
            stale.unlink(missing_ok=True)
    return result


def list_split(root: Path, split: str) -> Listing:
    """``root/split``'s class names, image paths and labels in ImageFolder's order."""
    folder = root / split
    if not folder.is_dir():
        raise ArchbenchError(
            f"{root} has no {split}/ folder: expected {root}/train/<class>/<image> and "
            f"{root}/test/<class>/<image> (the ImageFolder layout)"
        )
    classes = sorted(
        entry.name for entry in os.scandir(folder) if entry.is_dir() and not _hidden(entry.name)
    )
    if not classes:
        raise ArchbenchError(f"{folder} has no class folders (expected {folder}/<class>/<image>)")
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = _images_under(folder / name)
        if not found:
            raise ArchbenchError(
                f"class folder {folder / name} has no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        paths += found
        labels += [index] * len(found)
    return Listing(classes, paths, labels)


def _images_under(class_dir: Path) -> list[str]:
    """Image files below ``class_dir`` in ImageFolder's order (sorted walk, links followed)."""
    found = []
    for current, dirs, names in sorted(os.walk(class_dir, followlinks=True)):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        for name in sorted(names):
            if not _hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(current, name))
    return found


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _content_key(root: Path, listings: dict[str, Listing]) -> str:
    prefix = len(str(root)) + 1
    lines = [f"{CACHE_FORMAT}\0{SIZE}\0{root}"]
    for split, listing in listings.items():
        for path, label in zip(listing.paths, listing.labels, strict=True):
            stat = os.stat(path)
            lines.append(f"{split}\0{label}\0{path[prefix:]}\0{stat.st_size}\0{stat.st_mtime_ns}")
    root_tag = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    content = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:20]
    return f"{root_tag}-{content}"


def _read_cache(cache_file: Path, listings: dict[str, Listing]) -> FolderImages | None:
    """The cached tensors if the file is there, readable and the right shape; else None."""
    if not cache_file.is_file():
        return None
    try:
        saved = torch.load(cache_file, map_location="cpu", weights_only=True)
        if saved["format"] != CACHE_FORMAT or saved["classes"] != listings["train"].classes:
            return None
        for split, listing in listings.items():
            if tuple(saved[f"{split}_images"].shape) != (len(listing.paths), 3, SIZE, SIZE):
                return None
        tensors = {name: saved[name] for name in FolderImages._fields if "_" in name}
        return FolderImages(classes=list(saved["classes"]), key="", **tensors)
    except Exception as error:  # a damaged cache is re-decoded, not fatal
        warnings.warn(f"ignoring unreadable image cache {cache_file}: {error}", stacklevel=4)
        return None


def decode_images(paths: list[str], workers: int | None = None) -> torch.Tensor:
    """Decode image files to a uint8 ``(N, 3, 32, 32)`` tensor, in parallel threads.

    Small JPEGs go through torchvision's batched libjpeg-turbo decoder (which releases the GIL);
    other formats, large files and anything it rejects go through PIL. An image neither can read
    raises :class:`ArchbenchError` naming the file.
    """
    out = torch.empty((len(paths), 3, SIZE, SIZE), dtype=torch.uint8)
    workers = workers or min(4, os.cpu_count() or 1)
    starts = range(0, len(paths), _CHUNK)
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        # torchvision 0.29 deprecates its decoders in favour of TorchCodec; PIL takes over
        # when they are gone, so the warning (once per call) is noise here.
        warnings.filterwarnings("ignore", _TORCHVISION_DEPRECATION, DeprecationWarning)
        futures = [
            pool.submit(_decode_chunk, paths[start : start + _CHUNK], out[start : start + _CHUNK])
            for start in starts
        ]
        try:
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return out


def decode_one(name: str, data: bytes) -> torch.Tensor:
    """One encoded image -> uint8 ``(3, 32, 32)``, by the same path :func:`decode_images` takes
    for a file of these bytes, so a served image folder file equals its cached pixels."""
    decode_jpeg, mode = _jpeg_decoder()
    if decode_jpeg and _fast_jpeg(data):
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", _TORCHVISION_DEPRECATION, DeprecationWarning)
                (image,) = decode_jpeg([buffer], mode=mode)
        except RuntimeError:
            image = None
        if image is not None and tuple(image.shape) == (3, SIZE, SIZE):
            return image
    return _decode_pil(name, data)


def _jpeg_decoder():
    """torchvision's batched JPEG decoder and its RGB mode, or (None, None) without it."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:  # a torchvision without its image decoders: PIL does everything
        return None, None
    return decode_jpeg, ImageReadMode.RGB


def _fast_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff" and len(data) <= _FAST_MAX_BYTES


def _decode_chunk(paths: list[str], out: torch.Tensor) -> None:
    decode_jpeg, mode = _jpeg_decoder()
    fast: list[tuple[int, bytes]] = []
    for i, path in enumerate(paths):
        try:
            with open(path, "rb") as stream:
                data = stream.read()
        except OSError as error:
            raise ArchbenchError(f"cannot read image {path}: {error.strerror or error}") from None
        if decode_jpeg and _fast_jpeg(data):
            fast.append((i, data))
        else:
            out[i] = _decode_pil(path, data)
    if not fast:
        return
    buffers = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for _, data in fast]
    try:
        decoded = decode_jpeg(buffers, mode=mode)
    except RuntimeError:  # one bad file fails the batch: let PIL find it (or read it)
        decoded = [None] * len(fast)
    for (i, data), image in zip(fast, decoded, strict=True):
        if image is None or tuple(image.shape) != (3, SIZE, SIZE):
            image = _decode_pil(paths[i], data)
        out[i] = image


def _decode_pil(path: str, data: bytes) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (SIZE, SIZE))  # JPEG: decode at a reduced scale when large
            rgb = image.convert("RGB")
        if rgb.size != (SIZE, SIZE):
            rgb = rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        array = np.array(rgb, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ArchbenchError(f"cannot read image {path}: not an image format PIL knows") from None
    except Exception as error:  # PIL raises many types for damaged files
        raise ArchbenchError(f"cannot read image {path}: {error}") from None
    return torch.from_numpy(array).permute(2, 0, 1)
