"""Fitting a dataset's images to the ``(channels, height, width)`` a network takes.

Every source keeps its images at their native shape (MNIST 1x28x28, CIFAR 3x32x32, ...); the
network's input shape decides what the trainer and profiler see. Channels: grayscale is
replicated to 3 channels, colour becomes ITU-R BT.601 luma for a 1-channel network. Size:
unchanged when it matches; MNIST-style 28x28 sets reach exactly 32x32 by zero-padding 2 pixels
(the study's convention, and what archbench always did); anything else is resized once, as a
whole batched tensor operation (bilinear, antialiased), and the result is cached on disk, so the
second run at the same size loads it instead of resizing again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import files
from ..errors import ArchbenchError

Shape = tuple[int, int, int]
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")
RESIZE_CHUNK = 1024  # images per interpolation call: bounds the float32 working memory
RESIZE_FORMAT = "archbench-resized-1"


def parse_shape(shape) -> Shape:
    """A ``(C, H, W)`` of positive ints, or a clear error."""
    try:
        channels, height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        message = f"input shape must be (channels, height, width), got {shape!r}"
        raise ArchbenchError(message) from None
    if min(channels, height, width) < 1:
        raise ArchbenchError(f"input shape must be positive, got {shape!r}")
    return channels, height, width


def fit_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> ``(N, channels, H, W)``: replicate grayscale, or luma of RGB."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32).view(1, 3, 1, 1)
        luma = (images.to(torch.float32) * weights).sum(dim=1, keepdim=True)
        return luma.round_().clamp_(0, 255).to(torch.uint8)
    raise ArchbenchError(f"cannot turn {have}-channel images into {channels}-channel input")


def resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 images, in chunks of ``RESIZE_CHUNK``."""
    n, channels = images.shape[:2]
    out = torch.empty((n, channels, height, width), dtype=torch.uint8)
    for start in range(0, n, RESIZE_CHUNK):
        chunk = images[start : start + RESIZE_CHUNK].to(torch.float32)
        resized = F.interpolate(
            chunk, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def fit_images(
    images: torch.Tensor,
    shape: Shape,
    *,
    pad_to: int | None = None,
    cache_dir: Path | None = None,
    cache_key: str = "",
) -> torch.Tensor:
    """``images`` (uint8, native shape) as the network takes them; contiguous.

    ``pad_to``: a square size the source reaches by zero-padding rather than resizing (MNIST's
    28 -> 32). A resize is read from / written to ``cache_dir`` under ``cache_key`` (which must
    identify the source images) when both are given.
    """
    channels, height, width = parse_shape(shape)
    native_h, native_w = images.shape[2:]
    if (native_h, native_w) == (height, width):
        return fit_channels(images, channels).contiguous()
    if pad_to is not None and height == width == pad_to and native_h <= pad_to >= native_w:
        top, left = (pad_to - native_h) // 2, (pad_to - native_w) // 2
        padded = F.pad(images, (left, pad_to - native_w - left, top, pad_to - native_h - top))
        return fit_channels(padded, channels).contiguous()
    # Resize with as few channels as possible: replicating afterwards is free.
    cache = _cache_path(cache_dir, cache_key, images, shape) if cache_dir and cache_key else None
    resized = _read_cache(cache, (images.shape[0], min(channels, images.shape[1]), height, width))
    if resized is None:
        source = fit_channels(images, 1) if channels == 1 else images
        resized = resize(source, height, width)
        if cache is not None:
            _write_cache(cache, resized)
    return fit_channels(resized, channels).contiguous()


def _cache_path(cache_dir: Path, key: str, images: torch.Tensor, shape: Shape) -> Path:
    ident = {"key": key, "native": list(images.shape), "shape": list(shape)}
    ident["format"] = RESIZE_FORMAT
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in key.split(":")[0])
    return Path(cache_dir) / f"{slug}-{shape[1]}x{shape[2]}-{digest}.pt"


def _read_cache(path: Path | None, expected: tuple[int, ...]) -> torch.Tensor | None:
    if path is None or not path.is_file():
        return None
    with contextlib.suppress(Exception):  # a damaged or foreign cache is simply redone
        images = torch.load(path, map_location="cpu", weights_only=True)
        if images.dtype == torch.uint8 and tuple(images.shape) == expected:
            return images
    return None


def _write_cache(path: Path, images: torch.Tensor) -> None:
    try:
        files.torch_save(images, path)
    except OSError as error:
        warnings.warn(f"could not cache resized images in {path}: {error}", stacklevel=3)
