"""A split in memory and the ways to cut one: per-class (stratified) and plain seeded hold-outs.

Kept apart from the sources so every source (and the multi-label ones) can build splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Split:
    """One split in memory: uint8 ``(N, C, H, W)`` images and their targets.

    Targets are int64 ``(N,)`` class indices, or, for multi-label sets, uint8 ``(N, K)``
    multi-hot rows (1 where the image has the label).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        single = self.labels.dtype == torch.int64 and self.labels.dim() == 1
        multi = self.labels.dtype == torch.uint8 and self.labels.dim() == 2
        if not (single or multi) or self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},) or uint8 multi-hot "
                f"({self.images.shape[0]}, K), got {self.labels.dtype} {tuple(self.labels.shape)}"
            )

    @property
    def multilabel(self) -> bool:
        return self.labels.dim() == 2

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> Split:
        return Split(self.images.index_select(0, indices), self.labels.index_select(0, indices))


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


def random_split(count: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted ``(kept, held_out)`` indices: a seeded ``round(fraction * count)`` held out.

    Multi-hot targets have no single class to stratify on; a plain seeded permutation keeps
    every label's share close to the whole set's for sets of any useful size.
    """
    generator = torch.Generator().manual_seed(seed)
    held_count = min(math.floor(fraction * count + 0.5), count - 1)
    order = torch.randperm(count, generator=generator)
    return order[held_count:].sort().values, order[:held_count].sort().values


def nested_subset(count: int, size: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``size`` of ``count`` items: the first ``size`` of a seeded permutation,
    so for one seed every smaller subset lies inside every larger one (a learning curve)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[:size].sort().values
