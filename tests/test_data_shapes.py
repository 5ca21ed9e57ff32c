"""Datasets fitted to a network's input shape: native shapes, channels, resizing and its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archbench.data import (
    STUDY_SHAPE,
    DataConfig,
    channel_stats,
    dataset_shape,
    fit_images,
    load_data,
)
from archbench.data import shapes as shapes_module
from archbench.errors import ArchbenchError
from architectures import _registry as registry
from architectures import arch_info, create_arch, register_arch
from tests.test_data import write_idx_gz


@pytest.fixture
def fashion_like(tmp_path) -> Path:
    """Real digits written as 28x28 Fashion-MNIST files: the layout torchvision reads."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images[:300]).float()[:, None] * (255 / 16)
    images = F.interpolate(pixels, size=(28, 28), mode="bilinear").round().clamp(0, 255)
    images = images.to(torch.uint8)[:, 0].numpy()
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, part in (("train", slice(0, 250)), ("t10k", slice(250, 300))):
        write_idx_gz(raw / f"{prefix}-images-idx3-ubyte.gz", images[part])
        write_idx_gz(raw / f"{prefix}-labels-idx1-ubyte.gz", bunch.target[part])
    return tmp_path


def test_native_shapes_are_known_without_loading():
    assert dataset_shape("fashion-mnist") == (1, 28, 28)
    assert dataset_shape("digits") == (1, 32, 32)
    assert dataset_shape("CIFAR10") == (3, 32, 32)
    assert dataset_shape("imagefolder:/anywhere") == (3, 32, 32)


def test_a_network_declaring_1x28x28_gets_fashion_mnist_as_it_is(fashion_like, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_arch(family="mlp", description="test MLP", input_size=(1, 28, 28))
    def tiny_mlp(*, num_classes=10, in_channels=1):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, num_classes))

    shape = arch_info("tiny_mlp").input_shape(dataset_shape("fashion-mnist"))
    assert shape == (1, 28, 28)
    native = load_data(
        DataConfig("fashion-mnist", data_dir=fashion_like, download=False, input_shape=shape)
    )
    study = load_data(DataConfig("fashion-mnist", data_dir=fashion_like, download=False))
    assert native.test.images.shape[1:] == (1, 28, 28) and len(native.mean) == 1
    assert native.native_shape == (1, 28, 28) and study.shape == STUDY_SHAPE
    # the study's networks still get the 28x28 images padded to 32 and replicated
    assert torch.equal(study.test.images[:, 1, 2:30, 2:30], native.test.images[:, 0])
    assert study.test.images[:, :, :2].sum() == 0
    model = create_arch("tiny_mlp", num_classes=10, in_channels=shape[0])
    assert model(native.test.images[:4].float()).shape == (4, 10)


def test_resize_is_antialiased_bilinear_and_cached(tmp_path, monkeypatch):
    config = DataConfig("digits", data_dir=tmp_path, val_fraction=0, input_shape=(1, 20, 20))
    data = load_data(config)
    native = load_data(DataConfig("digits", data_dir=tmp_path, val_fraction=0, input_shape=None))
    want = F.interpolate(
        native.test.images.float(), size=(20, 20), mode="bilinear", antialias=True
    ).round().clamp(0, 255).to(torch.uint8)  # fmt: skip
    assert torch.equal(data.test.images, want)
    assert data.mean == pytest.approx(channel_stats(data.train.images)[0])
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "resized").glob("*.pt")) == [
        "digits", "digits"
    ]  # fmt: skip

    def no_resizing(*args, **kwargs):
        raise AssertionError("resized again instead of reading the cache")

    monkeypatch.setattr(shapes_module, "resize", no_resizing)
    again = load_data(config)
    assert torch.equal(again.test.images, data.test.images)
    assert torch.equal(again.train.images, data.train.images)


def test_grayscale_is_replicated_and_colour_becomes_luma(cifar10_mini, tmp_path):
    from PIL import Image

    source = f"imagefolder:{cifar10_mini}"
    colour = load_data(DataConfig(source, data_dir=tmp_path, val_fraction=0, input_shape=None))
    gray = load_data(DataConfig(source, data_dir=tmp_path, val_fraction=0, input_shape=(1, 32, 32)))
    assert colour.shape == (3, 32, 32) and gray.shape == (1, 32, 32) and len(gray.std) == 1
    rgb = colour.test.images[:50].permute(0, 2, 3, 1).numpy()
    pil = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in rgb])
    assert np.abs(gray.test.images[:50, 0].numpy().astype(int) - pil).max() <= 1

    digits = load_data(DataConfig("digits", data_dir=tmp_path, input_shape=(3, 64, 64)))
    assert digits.shape == (3, 64, 64)
    assert torch.equal(digits.test.images[:, 0], digits.test.images[:, 2])


def test_impossible_shapes_are_clear_errors():
    images = torch.zeros((2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ArchbenchError, match="cannot turn 3-channel images into 2-channel"):
        fit_images(images, (2, 8, 8))
    with pytest.raises(ArchbenchError, match="must be positive"):
        fit_images(images, (3, 0, 8))
