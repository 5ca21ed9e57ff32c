"""Batches from in-memory uint8 splits: batched augmentation and normalization, any device."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..errors import ArchbenchError
from .datasets import Split

AUGMENTATIONS = ("crop-flip", "flip", "crop", "none")
CROP_PADDING = 4

Stats = Sequence[float] | torch.Tensor


def normalize(images: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """uint8 images (``(N, C, H, W)`` or ``(C, H, W)``) -> float32 ``(x / 255 - mean) / std``."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    return images.to(torch.float32).div_(255).sub_(mean_t).div_(std_t)


def augment(images: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Random augmentation of a batch ``(N, C, H, W)``, a pure function of ``generator``'s state.

    ``crop``: a window of the input's size from the input zero-padded by 4 pixels, at an
    independent offset per image; ``flip``: mirror left-right with probability 0.5 per image;
    ``crop-flip``: crop, then flip; ``none``: the input itself. The random draws happen on the
    generator's device, so a CPU generator gives the same augmentation on every device.
    """
    if images.dim() != 4:
        raise ValueError(f"augment expects a batch (N, C, H, W), got shape {tuple(images.shape)}")
    draws = draw_augmentation(mode, images.shape[0], generator)
    return apply_augmentation(images, mode, *(d.to(images.device) for d in draws))


def draw_augmentation(
    mode: str, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random numbers :func:`augment` uses for ``n`` images: crop offsets ``(2, n)`` and flip
    flags ``(n,)`` (zeros where ``mode`` does not crop or flip), drawn in a fixed order."""
    if mode not in AUGMENTATIONS:
        raise ArchbenchError(
            f"unknown augmentation {mode!r}; choose from {', '.join(AUGMENTATIONS)}"
        )
    device = generator.device
    offsets = torch.full((2, n), CROP_PADDING, dtype=torch.long, device=device)
    flips = torch.zeros(n, dtype=torch.bool, device=device)
    if mode in ("crop", "crop-flip"):
        offsets = torch.randint(0, 2 * CROP_PADDING + 1, (2, n), generator=generator, device=device)
    if mode in ("flip", "crop-flip"):
        flips = torch.rand(n, generator=generator, device=device) < 0.5
    return offsets, flips


def apply_augmentation(
    images: torch.Tensor, mode: str, offsets: torch.Tensor, flips: torch.Tensor
) -> torch.Tensor:
    """Augment ``images`` with draws from :func:`draw_augmentation` (on the images' device)."""
    if mode in ("crop", "crop-flip"):
        images = random_crop(images, CROP_PADDING, offsets)
    if mode in ("flip", "crop-flip"):
        images = random_flip(images, flips)
    return images


def random_crop(images: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Per-image window (``offsets[:, i]`` = row, column) from the zero-padded batch: one gather,
    no loop over images."""
    n, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    # (N, C, H', W') -> view (N, C, dy, dx, H, W) of every window; pick (dy, dx) per image.
    windows = padded.unfold(2, height, 1).unfold(3, width, 1)
    rows = torch.arange(n, device=images.device)
    return windows[rows, :, offsets[0], offsets[1]].contiguous()


def random_flip(images: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    return torch.where(flips.view(-1, 1, 1, 1), images.flip(3), images)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> ``device`` without stalling the host: a CUDA copy from pinned memory is
    asynchronous, one from pageable memory waits for the GPU to drain its queue first."""
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 64-bit seed that depends only on ``(seed, epoch)``."""
    digest = hashlib.sha256(f"archbench-batches:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class BatchLoader:
    """Iterates (normalized float images, labels or multi-hot targets) batches of a Split.

    The uint8 split is moved to ``device`` once, and each epoch's random draws once; each batch
    is gathered, augmented and normalized there, with no host-device synchronization. The order
    and the augmentation of an epoch are a pure function of ``(seed, epoch)`` (set with
    :meth:`set_epoch`, default 0), whatever ran before in this process, so a resumed run repeats
    an uninterrupted one exactly.
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: Stats,
        std: Stats,
        shuffle: bool,
        augment: str = "none",
        seed: int = 0,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ArchbenchError(f"batch size must be a positive integer, got {batch_size!r}")
        if augment not in AUGMENTATIONS:
            raise ArchbenchError(
                f"unknown augmentation {augment!r}; choose from {', '.join(AUGMENTATIONS)}"
            )
        self.device = torch.device(device)
        self.images = to_device(split.images, self.device)
        self.labels = to_device(split.labels, self.device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.drop_last, self.channels_last = seed, drop_last, channels_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = int(self.labels.shape[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        n = int(self.labels.shape[0])
        order = None
        if self.shuffle:
            order = to_device(torch.randperm(n, generator=generator), self.device)
        bounds = [
            (b * self.batch_size, min((b + 1) * self.batch_size, n)) for b in range(len(self))
        ]
        # The whole epoch's random draws, made on the CPU in the order per-batch draws would be
        # (same numbers on every device) and copied once: no host-device sync per batch.
        draws = [draw_augmentation(self.augment, stop - start, generator) for start, stop in bounds]
        offsets = to_device(torch.cat([o for o, _ in draws] or [torch.empty(2, 0)], 1), self.device)
        flips = to_device(torch.cat([f for _, f in draws] or [torch.empty(0)]), self.device)
        for start, stop in bounds:
            if order is None:
                images, labels = self.images[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]
                images = self.images.index_select(0, index)
                labels = self.labels.index_select(0, index)
            if self.augment != "none":
                images = apply_augmentation(
                    images, self.augment, offsets[:, start:stop], flips[start:stop]
                )
            inputs = normalize(images, self.mean, self.std)
            if self.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            yield inputs, labels
