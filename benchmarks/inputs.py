"""Inputs for the benchmark scripts, in the shape each network takes, as the CLI feeds it.

A registered network is fed its own recorded ``input_size`` (seed 002's MLP: 1x28x28); a
torchvision/timm/user network follows the images' shape (``ArchInfo.input_shape``). Every
script builds its inputs here, so a network added to the registry is benchmarked in its own
shape instead of failing on a hard-coded 3x32x32.

The A/B worker imports this file beside an older revision's ``architectures``: a revision
without ``arch_info`` fed every network 3x32x32, and so does this then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

IMAGE_SHAPE = (3, 32, 32)  # the images the scripts time with: CIFAR-sized
INPUT_SEED = 0


def input_shape(arch: str, images: tuple[int, int, int] = IMAGE_SHAPE) -> tuple[int, int, int]:
    """``(C, H, W)`` that ``arch`` is fed from images of shape ``images``."""
    import architectures

    info = getattr(architectures, "arch_info", None)
    if info is None:  # an old revision: every network took 3x32x32
        return IMAGE_SHAPE
    entry = info(arch)
    resolve = getattr(entry, "input_shape", None)
    if callable(resolve):
        return tuple(int(v) for v in resolve(images))
    return tuple(int(v) for v in getattr(entry, "input_size", IMAGE_SHAPE))


def seeded_input(arch: str, batch: int = 1, seed: int = INPUT_SEED) -> torch.Tensor:
    """A fixed standard-normal batch in ``arch``'s input shape: latency depends on the shape,
    not on pixel values."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *input_shape(arch)), generator=generator)


def image_input(arch: str, images: torch.Tensor) -> torch.Tensor:
    """Real uint8 images ``(N, C, H, W)`` fitted to ``arch``'s input shape as archbench's data
    pipeline fits them (channels, then size), scaled to [0, 1] and standardized per image."""
    from archbench.data import fit_images

    fitted = fit_images(images, input_shape(arch, tuple(images.shape[1:]))).float() / 255
    flat = fitted.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return ((fitted - mean) / std).contiguous()
