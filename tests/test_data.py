"""Datasets, splits, statistics, augmentation and batches, on real images (digits, CIFAR JPEGs)."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archbench.data import (
    AUGMENTATIONS,
    CIFAR_MEAN,
    CIFAR_STD,
    BatchLoader,
    DataConfig,
    Split,
    augment,
    channel_stats,
    default_data_dir,
    load_data,
    normalize,
    stratified_split,
)
from archbench.data import imagefolder as imagefolder_module
from archbench.data import torchvision_sets as torchvision_sets_module
from archbench.data.loader import epoch_seed
from archbench.errors import ArchbenchError

CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors: see conftest


@pytest.fixture(scope="module")
def digits(data_dir):
    return load_data(DataConfig("digits", data_dir=data_dir))


@pytest.fixture(scope="module")
def mini(cifar10_mini, data_dir):
    """The mini CIFAR-10 folder without a validation split: every file in folder order."""
    return load_data(DataConfig(f"imagefolder:{cifar10_mini}", data_dir=data_dir, val_fraction=0))


def counts(split: Split, num_classes: int) -> torch.Tensor:
    return torch.bincount(split.labels, minlength=num_classes)


# --- digits ---------------------------------------------------------------------------------------


def test_digits_shapes_sizes_and_defaults(digits):
    assert digits.name == "digits" and digits.num_classes == 10
    assert digits.classes == [str(d) for d in range(10)]
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1293, 145, 359)
    for split in (digits.train, digits.val, digits.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.shape[1:] == (3, 32, 32) and split.images.is_contiguous()
        assert torch.equal(split.images[:, 0], split.images[:, 2])  # grayscale replicated
    assert digits.train.images.max() == 255 and digits.train.images.min() == 0
    assert digits.default_augment == "crop"


def test_digits_splits_are_stratified(digits):
    train, val, test = (counts(s, 10).double() for s in (digits.train, digits.val, digits.test))
    assert (train > 0).all() and (val > 0).all() and (test > 0).all()
    full = train + val + test
    # round(fraction * n) per class: at most half an image off per class
    assert ((test - 0.2 * full).abs() <= 0.5).all()
    assert ((val - 0.1 * (train + val)).abs() <= 0.5).all()
    for split in (train, val, test):
        assert torch.allclose(split / split.sum(), full / full.sum(), atol=0.01)


def test_digits_split_is_a_function_of_the_seed(data_dir, digits):
    again = load_data(DataConfig("digits", data_dir=data_dir, split_seed=0))
    assert torch.equal(again.val.images, digits.val.images)
    assert torch.equal(again.train.labels, digits.train.labels)
    other = load_data(DataConfig("digits", data_dir=data_dir, split_seed=1))
    assert not torch.equal(other.val.images, digits.val.images)
    assert torch.equal(other.test.images, digits.test.images)  # the test split is fixed
    assert len(other.val) == len(digits.val)


def test_stratified_split_partitions_the_indices():
    labels = torch.arange(103) % 4
    kept, held = stratified_split(labels, 0.25, seed=7)
    assert torch.equal(torch.cat([kept, held]).sort().values, torch.arange(103))
    assert torch.bincount(labels[held]).tolist() == [7, 7, 7, 6]  # 0.25 * 26 = 6.5 rounds up
    assert torch.equal(stratified_split(labels, 0.25, seed=7)[1], held)
    # a class of one image keeps it rather than vanish from the kept part
    kept, held = stratified_split(torch.tensor([0, 0, 0, 0, 1]), 0.5, seed=0)
    assert 4 in kept.tolist() and len(held) == 2


def test_val_fraction_zero_and_out_of_range(data_dir):
    assert load_data(DataConfig("digits", data_dir=data_dir, val_fraction=0)).val is None
    for bad in (-0.1, 1.0, 1.5, math.nan):
        with pytest.raises(ArchbenchError, match="val_fraction"):
            load_data(DataConfig("digits", data_dir=data_dir, val_fraction=bad))
    with pytest.raises(ArchbenchError, match="holds out no image"):
        load_data(DataConfig("digits", data_dir=data_dir, val_fraction=0.001))


def test_statistics_are_the_training_split_and_are_cached(tmp_path):
    data = load_data(DataConfig("digits", data_dir=tmp_path))
    mean, std = channel_stats(data.train.images)
    assert data.mean == pytest.approx(mean) and data.std == pytest.approx(std)
    (cache,) = (tmp_path / "stats").glob("digits-*.json")
    # the next load reads the file: a value planted there comes back
    record = json.loads(cache.read_text())
    record["mean"] = [0.5, 0.25, 0.125]
    cache.write_text(json.dumps(record))
    assert load_data(DataConfig("digits", data_dir=tmp_path)).mean == (0.5, 0.25, 0.125)
    # another validation split is another key, computed afresh
    assert load_data(DataConfig("digits", data_dir=tmp_path, split_seed=3)).mean != (
        0.5,
        0.25,
        0.125,
    )


# --- image folders --------------------------------------------------------------------------------


def test_imagefolder_mini_cifar(cifar10_mini, mini, data_dir):
    assert mini.classes == CIFAR_CLASSES and mini.default_augment == "crop-flip"
    assert (len(mini.train), len(mini.test)) == (2000, 1000)
    assert counts(mini.train, 10).tolist() == [200] * 10
    assert counts(mini.test, 10).tolist() == [100] * 10
    assert mini.train.images.shape == (2000, 3, 32, 32) and mini.train.images.is_contiguous()
    # labels follow the folders, images the sorted files within them
    for index in (0, 399, 1234, 1999):
        cls = CIFAR_CLASSES[int(mini.train.labels[index])]
        name = sorted(os.listdir(cifar10_mini / "train" / cls))[index % 200]
        expected = np.asarray(Image.open(cifar10_mini / "train" / cls / name).convert("RGB"))
        decoded = mini.train.images[index].permute(1, 2, 0).numpy()
        assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 1.0
    with_val = load_data(DataConfig(f"imagefolder:{cifar10_mini}", data_dir=data_dir))
    assert (len(with_val.train), len(with_val.val), len(with_val.test)) == (1800, 200, 1000)
    assert counts(with_val.val, 10).tolist() == [20] * 10


def test_imagefolder_second_load_hits_the_cache(cifar10_mini, tmp_path, monkeypatch):
    folder = tmp_path / "mini"
    shutil.copytree(cifar10_mini, folder)
    config = DataConfig(f"imagefolder:{folder}", data_dir=tmp_path / "data", val_fraction=0)
    first = load_data(config)
    assert len(list((tmp_path / "data" / "imagefolder-cache").glob("*.pt"))) == 1

    def no_decoding(paths, workers=None):
        raise AssertionError("decoded again despite an unchanged folder")

    monkeypatch.setattr(imagefolder_module, "decode_images", no_decoding)
    second = load_data(config)
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels)
    # a changed file changes the key: decoded again, and the stale cache file is replaced
    (before,) = (tmp_path / "data" / "imagefolder-cache").glob("*.pt")
    os.utime(folder / "test" / "cat" / "0000.jpg", ns=(0, 10**18))
    with pytest.raises(AssertionError, match="decoded again"):
        load_data(config)
    monkeypatch.undo()
    assert torch.equal(load_data(config).test.images, first.test.images)
    (after,) = (tmp_path / "data" / "imagefolder-cache").glob("*.pt")
    assert after != before


def make_folder(root: Path, source: Path, layout: dict[str, dict[str, int]]) -> Path:
    """``layout = {"train": {"cat": 2}, ...}``: copies of real CIFAR JPEGs from ``source``."""
    for split, classes in layout.items():
        for cls, count in classes.items():
            (root / split / cls).mkdir(parents=True)
            for name in sorted(os.listdir(source / "train" / "cat"))[:count]:
                shutil.copy(source / "train" / "cat" / name, root / split / cls / name)
    return root


def load_folder(root: Path, tmp_path: Path):
    return load_data(DataConfig(f"imagefolder:{root}", data_dir=tmp_path / "data", val_fraction=0))


JPEG_HEADER = b"\xff\xd8\xff" + bytes(99)  # starts like a JPEG, then nothing
GOOD = {"train": {"cat": 3, "dog": 3}, "test": {"cat": 2, "dog": 2}}


def test_imagefolder_small_folder_with_other_formats_and_sizes(cifar10_mini, tmp_path):
    root = make_folder(tmp_path / "ds", cifar10_mini, GOOD)
    Image.new("L", (64, 48), color=200).save(root / "train" / "dog" / "gray.png")
    (root / "train" / "dog" / "notes.txt").write_text("not an image, ignored")
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    data = load_folder(root, tmp_path)
    assert data.classes == ["cat", "dog"] and len(data.train) == 7 and len(data.test) == 4
    png = data.train.images[data.train.labels == 1][-1]  # "gray.png" sorts after "0002.jpg"
    assert png.shape == (3, 32, 32) and (png == 200).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda root: shutil.rmtree(root), "does not exist"),
        (lambda root: shutil.rmtree(root / "test"), "has no test/ folder"),
        (lambda root: [p.unlink() for p in (root / "train" / "dog").iterdir()], "train/dog has no"),
        (lambda root: (root / "test" / "dog").rename(root / "test" / "x"), "only in train: dog"),
        (
            lambda root: (root / "test" / "cat" / "0001.jpg").write_bytes(b"garbage" * 99),
            "0001.jpg",
        ),
        (lambda root: (root / "train" / "cat" / "0000.jpg").write_bytes(JPEG_HEADER), "0000.jpg"),
    ],
    ids=[
        "missing-path",
        "missing-test",
        "empty-class",
        "mismatched-classes",
        "garbage",
        "truncated",
    ],
)
def test_imagefolder_errors_name_the_problem(cifar10_mini, tmp_path, change, message):
    root = make_folder(tmp_path / "ds", cifar10_mini, GOOD)
    change(root)
    with pytest.raises(ArchbenchError, match=message) as caught:
        load_folder(root, tmp_path)
    assert "\n" not in str(caught.value)


def test_imagefolder_mismatch_names_both_sides(cifar10_mini, tmp_path):
    root = make_folder(tmp_path / "ds", cifar10_mini, GOOD)
    (root / "test" / "dog").rename(root / "test" / "bird")
    with pytest.raises(ArchbenchError, match="only in train: dog; only in test: bird"):
        load_folder(root, tmp_path)


# --- torchvision sets -----------------------------------------------------------------------------


def test_missing_cifar10_without_download_names_the_directory(tmp_path):
    with pytest.raises(ArchbenchError) as caught:
        load_data(DataConfig("cifar10", data_dir=tmp_path, download=False))
    message = str(caught.value)
    for part in (str(tmp_path), "cifar-10-batches-py/", "cifar-10-python.tar.gz", "--data-dir"):
        assert part in message
    assert "ARCHBENCH_DATA" in message


def test_broken_local_archive_is_reported(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ArchbenchError, match="cannot extract .*cifar-10-python.tar.gz"):
        load_data(DataConfig("cifar10", data_dir=tmp_path, download=False))


@pytest.fixture
def stalled_server():
    """A port that accepts connections and never answers: a download there can only time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/cifar-10-python.tar.gz"
    server.close()


def test_download_fails_fast_and_names_the_directory(tmp_path, monkeypatch, stalled_server):
    import torchvision.datasets

    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", stalled_server)
    monkeypatch.setattr(torchvision_sets_module, "DOWNLOAD_TIMEOUT_S", 1.0)
    with pytest.raises(ArchbenchError, match="download failed") as caught:
        load_data(DataConfig("cifar10", data_dir=tmp_path / "cifar", download=True))
    # The socket timeout, not the server, ended it (no wall-clock bound: the machine may be busy;
    # without the timeout the read would wait forever and the test would never return).
    assert "timed out" in str(caught.value)
    assert str(tmp_path / "cifar") in str(caught.value)


def test_unresolvable_host_fails_fast(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(urllib.request, "getproxies", dict)
    with pytest.raises(ArchbenchError, match="could not resolve"):
        load_data(DataConfig("fashion-mnist", data_dir=tmp_path, download=True))


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """The MNIST file format: magic (uint8, ndim), big-endian dimensions, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(("name", "folder", "first_class"), [
    ("mnist", "MNIST", "0 - zero"), ("fashion-mnist", "FashionMNIST", "T-shirt/top"),
])  # fmt: skip
def test_mnist_layout_from_local_gz_files(tmp_path, name, folder, first_class):
    """Real digits as 28x28 MNIST files (gzipped only): unpacked offline, padded to 32x32."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images[:500]).float()[:, None] * (255 / 16)
    images = torch.nn.functional.interpolate(pixels, size=(28, 28), mode="bilinear")
    images = images.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    labels = bunch.target[:500]
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, part in (("train", slice(0, 400)), ("t10k", slice(400, 500))):
        write_idx_gz(raw / f"{prefix}-images-idx3-ubyte.gz", images[part])
        write_idx_gz(raw / f"{prefix}-labels-idx1-ubyte.gz", labels[part])
    data = load_data(DataConfig(name, data_dir=tmp_path, download=False, val_fraction=0.1))
    assert data.classes[0] == first_class and data.num_classes == 10
    assert (len(data.train) + len(data.val), len(data.test)) == (400, 100)
    assert data.default_augment == "crop" and data.mean != CIFAR_MEAN
    test = data.test.images
    assert test.shape == (100, 3, 32, 32) and test.is_contiguous()
    assert torch.equal(test[:, 2, 2:30, 2:30], torch.from_numpy(images[400:]))
    assert test[:, :, :2].sum() == 0 and test[:, :, :, 30:].sum() == 0
    assert torch.equal(data.test.labels, torch.from_numpy(labels[400:]).long())


def test_damaged_local_files_are_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in (
        "train-images-idx3",
        "train-labels-idx1",
        "t10k-images-idx3",
        "t10k-labels-idx1",
    ):
        (raw / f"{prefix}-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(ArchbenchError, match=f"cannot read dataset 'mnist' from {tmp_path}"):
        load_data(DataConfig("mnist", data_dir=tmp_path, download=False))


# --- names and places -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("cifar-10", "'cifar10'"),
        ("fashion_mnist", "'fashion-mnist'"),
        ("imagefolder", "'imagefolder:PATH'"),
    ],
)
def test_unknown_dataset_suggests_a_close_match(name, suggestion, tmp_path):
    with pytest.raises(
        ArchbenchError, match=f"unknown dataset '{name}'; did you mean {suggestion}"
    ):
        load_data(DataConfig(name, data_dir=tmp_path))


def test_a_directory_name_suggests_imagefolder(tmp_path):
    with pytest.raises(ArchbenchError, match=f"did you mean 'imagefolder:{tmp_path}'"):
        load_data(DataConfig(str(tmp_path), data_dir=tmp_path))


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCHBENCH_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("ARCHBENCH_DATA")
    monkeypatch.setenv("ARCHBENCH_CACHE", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "data"


# --- augmentation ---------------------------------------------------------------------------------


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def batch(mini):
    return mini.train.images[::40].clone()  # 50 real CIFAR images, 5 per class


def test_augment_none_is_identity_and_unknown_mode_fails(batch):
    assert torch.equal(augment(batch, "none", seeded(0)), batch)
    with pytest.raises(ArchbenchError, match="crop-flip"):
        augment(batch, "rotate", seeded(0))


def test_flip_gives_each_image_or_its_mirror(batch):
    out = augment(batch, "flip", seeded(1))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    same = (out == batch).flatten(1).all(1)
    mirrored = (out == batch.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert same.any() and mirrored.any()


def window_offsets(out: torch.Tensor, images: torch.Tensor) -> list[tuple[int, int] | None]:
    """For each image the (dy, dx) whose window of the 4-padded input equals the output."""
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    found = []
    for image, result in zip(padded, out, strict=True):
        hits = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(image[:, dy : dy + 32, dx : dx + 32], result)
        ]
        found.append(hits[0] if hits else None)
    return found


def test_crop_is_a_window_of_the_padded_image(batch):
    out = augment(batch, "crop", seeded(2))
    assert out.shape == batch.shape and out.dtype == torch.uint8 and out.is_contiguous()
    offsets = window_offsets(out, batch)
    assert None not in offsets
    assert len(set(offsets)) > 10  # offsets are drawn per image


def test_crop_flip_is_a_window_of_the_image_or_its_mirror(batch):
    out = augment(batch, "crop-flip", seeded(3))
    plain, mirrored = window_offsets(out, batch), window_offsets(out.flip(3), batch)
    assert all(a is not None or b is not None for a, b in zip(plain, mirrored, strict=True))


@pytest.mark.parametrize("mode", AUGMENTATIONS)
def test_augment_is_deterministic_given_the_generator(batch, mode):
    assert torch.equal(augment(batch, mode, seeded(5)), augment(batch, mode, seeded(5)))
    if mode != "none":
        assert not torch.equal(augment(batch, mode, seeded(5)), augment(batch, mode, seeded(6)))


# --- normalization and batches --------------------------------------------------------------------


def test_normalize_values_and_devices(batch):
    out = normalize(batch, CIFAR_MEAN, CIFAR_STD)
    assert out.dtype == torch.float32 and out.shape == batch.shape
    pixel = batch[7, :, 3, 4].double() / 255
    expected = (pixel - torch.tensor(CIFAR_MEAN, dtype=torch.float64)) / torch.tensor(CIFAR_STD)
    assert torch.allclose(out[7, :, 3, 4].double(), expected, atol=1e-5)
    assert torch.equal(normalize(batch[0], CIFAR_MEAN, CIFAR_STD), out[0])  # unbatched too


def test_normalized_training_split_has_zero_mean_unit_std(digits):
    out = normalize(digits.train.images, digits.mean, digits.std)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


@pytest.fixture(scope="module")
def ids_split(digits):
    """Real digit images whose labels are their own indices, to track each sample."""
    n = len(digits.train)
    return Split(digits.train.images, torch.arange(n))


def make_loader(split, **options):
    defaults = dict(batch_size=100, mean=(0.3, 0.3, 0.3), std=(0.3, 0.3, 0.3), shuffle=True)
    return BatchLoader(split, **(defaults | options))


def run_epoch(loader, epoch):
    loader.set_epoch(epoch)
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]), batches


def test_every_sample_once_per_epoch(ids_split):
    n = len(ids_split)  # 1293
    loader = make_loader(ids_split, augment="crop")
    assert len(loader) == math.ceil(n / 100) == 13
    images, ids, batches = run_epoch(loader, 0)
    assert len(batches) == 13 and batches[-1][1].numel() == n - 1200
    assert torch.equal(ids.sort().values, torch.arange(n))
    assert not torch.equal(ids, torch.arange(n))  # shuffled
    assert images.shape == (n, 3, 32, 32) and images.dtype == torch.float32
    dropped = make_loader(ids_split, drop_last=True)
    assert len(dropped) == 12 and len(list(dropped)) == 12


def test_epochs_are_a_function_of_seed_and_epoch(ids_split):
    first = make_loader(ids_split, augment="crop-flip", seed=4)
    for epoch in range(3):  # epochs 0-2 ran before in this process...
        run_epoch(first, epoch)
    images, ids, _ = run_epoch(first, 3)
    fresh = make_loader(ids_split, augment="crop-flip", seed=4)  # ...or not: a resumed run
    images_again, ids_again, _ = run_epoch(fresh, 3)
    assert torch.equal(ids, ids_again) and torch.equal(images, images_again)
    # iterating the same epoch twice repeats it too
    assert torch.equal(run_epoch(fresh, 3)[0], images)
    other_epoch = run_epoch(fresh, 4)
    assert not torch.equal(other_epoch[1], ids)
    other_seed = run_epoch(make_loader(ids_split, augment="crop-flip", seed=5), 3)
    assert not torch.equal(other_seed[1], ids)


def test_an_epoch_drawn_at_once_equals_per_batch_draws(ids_split):
    """The loader draws an epoch's randomness up front (one copy to a GPU, no sync per batch);
    the numbers are exactly those of drawing per batch, as augment() does."""
    images, ids, _ = run_epoch(make_loader(ids_split, augment="crop-flip", seed=7), 2)
    generator = torch.Generator().manual_seed(epoch_seed(7, 2))
    order = torch.randperm(len(ids_split), generator=generator)
    batches = [
        augment(ids_split.images[order[start : start + 100]], "crop-flip", generator)
        for start in range(0, len(ids_split), 100)
    ]
    assert torch.equal(ids, order)
    assert torch.equal(images, normalize(torch.cat(batches), (0.3,) * 3, (0.3,) * 3))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batches_equal_cpu_batches(ids_split):
    cpu = run_epoch(make_loader(ids_split, augment="crop-flip", seed=3), 1)
    gpu = run_epoch(make_loader(ids_split, augment="crop-flip", seed=3, device="cuda"), 1)
    assert gpu[0].is_cuda and torch.equal(gpu[1].cpu(), cpu[1])
    assert torch.allclose(gpu[0].cpu(), cpu[0])


def test_unshuffled_loader_is_the_normalized_split(digits):
    loader = make_loader(digits.test, shuffle=False, mean=digits.mean, std=digits.std)
    images, labels, _ = run_epoch(loader, 0)
    assert torch.equal(labels, digits.test.labels)
    assert torch.equal(images, normalize(digits.test.images, digits.mean, digits.std))
    last = make_loader(digits.test, shuffle=False, mean=digits.mean, std=digits.std,
                       channels_last=True)  # fmt: skip
    x, _ = next(iter(last))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, images[:100])


def test_loader_rejects_bad_settings(digits):
    with pytest.raises(ArchbenchError, match="batch size"):
        make_loader(digits.test, batch_size=0)
    with pytest.raises(ArchbenchError, match="augmentation"):
        make_loader(digits.test, augment="cutout")
