"""Multi-label datasets on real images: digit mosaics, CIFAR-10 JPEG mosaics, CSV label files."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from archbench.data import BatchLoader, DataConfig, load_data
from archbench.data import multilabel as multilabel_module
from archbench.data.datasets import _load_digits
from archbench.data.imagefolder import decode_images
from archbench.data.multilabel import CsvLayout, make_mosaics
from archbench.errors import ArchbenchError

CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
VEHICLES = {"airplane", "automobile", "ship", "truck"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors: see conftest


@pytest.fixture(scope="module")
def mosaic(data_dir):
    return load_data(DataConfig("digits-mosaic", data_dir=data_dir))


def tile_classes(image: torch.Tensor, tiles: torch.Tensor, labels: torch.Tensor) -> set[int]:
    """Classes of the source tiles that a 2x2 mosaic is made of (matched pixel for pixel)."""
    found = set()
    for top in (0, 16):
        for left in (0, 16):
            quarter = image[:, top : top + 16, left : left + 16]
            same = (tiles == quarter).flatten(1).all(dim=1)
            assert same.any(), "a tile is not a downscaled source image"
            found |= set(labels[same].tolist())
    return found


def test_digits_mosaic_sizes_and_targets(mosaic):
    assert mosaic.name == "digits-mosaic" and mosaic.multilabel
    assert mosaic.classes == [str(d) for d in range(10)] and mosaic.default_augment == "crop"
    assert (len(mosaic.train), len(mosaic.val), len(mosaic.test)) == (1294, 144, 359)
    for split in (mosaic.train, mosaic.val, mosaic.test):
        assert split.images.shape[1:] == (3, 32, 32) and split.images.dtype == torch.uint8
        assert split.labels.dtype == torch.uint8 and split.labels.shape[1] == 10
        per_image = split.labels.sum(dim=1)
        assert per_image.min() == 1 and per_image.max() == 4
    counts = torch.bincount(mosaic.train.labels.sum(dim=1).long(), minlength=5)[1:]
    assert (counts > 250).all()  # k is uniform over 1..4


def test_mosaic_tiles_are_source_digits_of_the_target_classes(mosaic):
    source = _load_digits()
    tiles = F.interpolate(
        source.test.images.float(), size=(16, 16), mode="bilinear", antialias=True
    )
    tiles = tiles.round().clamp(0, 255).to(torch.uint8)
    for row in range(0, 359, 9):
        expected = set(mosaic.test.labels[row].nonzero().flatten().tolist())
        assert tile_classes(mosaic.test.images[row], tiles, source.test.labels) == expected


def test_mosaics_are_deterministic(mosaic, data_dir):
    again = load_data(DataConfig("DIGITS-MOSAIC", data_dir=data_dir))
    assert torch.equal(again.train.images, mosaic.train.images)
    assert torch.equal(again.test.labels, mosaic.test.labels)
    source = _load_digits()
    one = make_mosaics(source.train.images, source.train.labels, 10, 50, seed=5)
    two = make_mosaics(source.train.images, source.train.labels, 10, 50, seed=6)
    assert not torch.equal(one[0], two[0])


def test_cifar_mosaics_from_an_image_folder(cifar10_mini, data_dir):
    data = load_data(DataConfig(f"mosaic:imagefolder:{cifar10_mini}", data_dir=data_dir))
    assert data.classes == CIFAR_CLASSES and data.default_augment == "crop-flip"
    assert (len(data.train), len(data.val), len(data.test)) == (1800, 200, 1000)
    assert data.test.labels.sum(dim=1).float().mean() == pytest.approx(2.5, abs=0.15)
    images = decode_images(sorted(str(p) for p in (cifar10_mini / "test").rglob("*.jpg")))
    labels = torch.arange(10).repeat_interleave(100)  # sorted paths: class folders in order
    tiles = F.interpolate(images.float(), size=(16, 16), mode="bilinear", antialias=True)
    tiles = tiles.round().clamp(0, 255).to(torch.uint8)
    for row in (0, 500, 999):
        expected = set(data.test.labels[row].nonzero().flatten().tolist())
        assert tile_classes(data.test.images[row], tiles, labels) == expected


def test_multi_hot_batches_and_train_limit(mosaic, data_dir):
    loader = BatchLoader(mosaic.val, batch_size=64, mean=mosaic.mean, std=mosaic.std, shuffle=True)
    seen = torch.cat([labels for _, labels in loader])
    assert len(loader) == 3 and seen.shape == (144, 10)
    assert torch.equal(seen.sum(dim=0), mosaic.val.labels.sum(dim=0))
    small = load_data(DataConfig("digits-mosaic", data_dir=data_dir, train_limit=100))
    larger = load_data(DataConfig("digits-mosaic", data_dir=data_dir, train_limit=400))
    assert len(small.train) == 100 and len(larger.train) == 400
    assert torch.equal(small.val.labels, mosaic.val.labels)  # the limit leaves val and test alone
    big = {bytes(image.numpy()) for image in larger.train.images}
    assert all(bytes(image.numpy()) in big for image in small.train.images)  # nested sizes
    with pytest.raises(ArchbenchError, match="train_limit 5000 exceeds the 1294"):
        load_data(DataConfig("digits-mosaic", data_dir=data_dir, train_limit=5000))


# --- CSV ------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def cifar_rows(root: Path, per_class: dict[str, int], separator: str = ";") -> list[dict]:
    """Rows for real mini CIFAR JPEGs: label = class name plus ``vehicle`` or ``animal``."""
    rows = []
    for split, count in per_class.items():
        for cls in CIFAR_CLASSES:
            folder = root / split / cls
            for name in sorted(os.listdir(folder))[:count]:
                kind = "vehicle" if cls in VEHICLES else "animal"
                rows.append(
                    {
                        "image": f"{split}/{cls}/{name}",
                        "labels": f"{cls}{separator}{kind}",
                        "split": split,
                    }
                )
    return rows


@pytest.fixture(scope="module")
def csv_root(cifar10_mini, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("csv-set")
    for split in ("train", "test"):
        shutil.copytree(cifar10_mini / split, root / split)
    return root


def test_csv_dataset_labels_splits_and_images(csv_root, tmp_path):
    rows = cifar_rows(csv_root, {"train": 6, "test": 3})
    path = write_csv(csv_root / "labels.csv", rows, ["image", "labels", "split"])
    data = load_data(DataConfig(f"csv:{path}", data_dir=tmp_path, val_fraction=0))
    assert data.classes == sorted([*CIFAR_CLASSES, "animal", "vehicle"]) and data.multilabel
    assert (len(data.train), len(data.test)) == (60, 30)
    assert (data.train.labels.sum(dim=1) == 2).all()
    assert data.train.labels[:, data.classes.index("vehicle")].sum() == 24
    first_test = rows[60]
    expected = decode_images([str(csv_root / first_test["image"])])[0]
    assert torch.equal(data.test.images[0], expected)
    assert data.test.labels[0].nonzero().flatten().tolist() == [
        data.classes.index("airplane"),
        data.classes.index("vehicle"),
    ]


def test_csv_second_load_hits_the_cache(csv_root, tmp_path, monkeypatch):
    path = write_csv(
        tmp_path / "cached.csv",
        [
            {**row, "image": str(csv_root / row["image"])}
            for row in cifar_rows(csv_root, {"train": 2, "test": 1})
        ],
        ["image", "labels", "split"],
    )
    config = DataConfig(f"csv:{path}", data_dir=tmp_path / "data", val_fraction=0)
    first = load_data(config)

    def no_decoding(paths, workers=None):
        raise AssertionError("decoded again despite an unchanged CSV")

    monkeypatch.setattr(multilabel_module, "decode_images", no_decoding)
    assert torch.equal(load_data(config).train.images, first.train.images)
    path.write_text(path.read_text().replace("animal", "beast"))
    with pytest.raises(AssertionError, match="decoded again"):
        load_data(config)


def test_csv_separator_columns_and_default_split(csv_root, tmp_path):
    rows = [
        {"file": row["image"], "tags": row["labels"]}
        for row in cifar_rows(csv_root, {"train": 5}, separator="|")
    ]
    path = write_csv(csv_root / "tags.csv", rows, ["file", "tags"])
    layout = CsvLayout(image_column="file", labels_column="tags", separator="|")
    data = load_data(
        DataConfig(f"csv:{path}", data_dir=tmp_path, val_fraction=0, csv_layout=layout)
    )
    assert (len(data.train), len(data.test)) == (40, 10)  # no split column: a fixed 20% to test
    assert "vehicle" in data.classes and "airplane|vehicle" not in data.classes


def bad_csv(csv_root: Path, problem: str) -> tuple[Path, CsvLayout]:
    rows = cifar_rows(csv_root, {"train": 2, "test": 1})
    layout = CsvLayout()
    if problem == "missing image":
        rows[3]["image"] = "train/cat/no-such-file.jpg"
    elif problem == "unreadable image":
        broken = csv_root / "broken.jpg"
        broken.write_bytes(b"this is not a JPEG")
        rows[4]["image"] = "broken.jpg"
    elif problem == "unknown column":
        layout = CsvLayout(labels_column="attributes")
    elif problem == "label only in test":
        rows[-1]["labels"] = "truck;unicorn"
    elif problem == "bad split":
        rows[0]["split"] = "holdout"
    return write_csv(csv_root / f"{problem}.csv", rows, ["image", "labels", "split"]), layout


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing image", r"line 5: image 'train/cat/no-such-file.jpg' not found"),
        ("unreadable image", r"cannot read image .*broken\.jpg"),
        ("unknown column", r"has no labels column 'attributes' \(columns: image, labels, split\)"),
        ("label only in test", r"label 'unicorn' appears only in test rows"),
        ("bad split", r"line 2: split 'holdout' is not one of train, test"),
    ],
)
def test_csv_errors_are_one_clear_line(csv_root, tmp_path, problem, message):
    path, layout = bad_csv(csv_root, problem)
    with pytest.raises(ArchbenchError, match=message) as error:
        load_data(DataConfig(f"csv:{path}", data_dir=tmp_path, csv_layout=layout))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "csv-cache").exists() or not any((tmp_path / "csv-cache").iterdir())


def test_mosaic_names_are_checked(tmp_path):
    with pytest.raises(ArchbenchError, match="unknown dataset 'digitz'"):
        load_data(DataConfig("mosaic:digitz", data_dir=tmp_path))
    with pytest.raises(ArchbenchError, match="csv: needs a value"):
        load_data(DataConfig("csv:", data_dir=tmp_path))
