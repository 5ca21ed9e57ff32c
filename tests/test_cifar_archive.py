"""CIFAR archives in the release's python format: written from images, read by torchvision.

The user's own command (``--dataset cifar10|cifar100 --data-dir D``) with real content: a
CIFAR-10 archive built from the mini JPEG set must give exactly ``imagefolder:``'s pixels, and a
CIFAR-100 archive (synthetic images, the official 100 fine and 20 coarse names) must train,
profile with top-5, and regroup onto the archive's own coarse labels.
"""

from __future__ import annotations

import json
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from archbench.cli import main
from archbench.data import DataConfig, load_data
from archbench.data.cifar_archive import (
    CIFAR10_ARCHIVE,
    CIFAR10_FOLDER,
    CIFAR100_ARCHIVE,
    CifarSplit,
    imagefolder_splits,
    write_cifar10,
    write_cifar100,
)
from archbench.data.group_presets import CIFAR100_SUPERCLASSES
from archbench.data.groups import regroup_data
from archbench.errors import ArchbenchError
from archbench.evaluate.regroup import load_regrouping
from tests.cifar100_official import CIFAR100_COARSE, CIFAR100_FINE, CIFAR100_FINE_TO_COARSE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_NET = f"{Path(__file__).with_name('tiny_digits_net.py')}:build"
PROFILE_FAST = ["--backends", "cpu-eager", "--samples", "8", "--warmup", "1", "--batch-sizes", "1"]
RELEASE_WARNING = "files differ from the official release"


def _members(archive: Path) -> dict[str, dict]:
    """Every pickle in ``archive``, read as torchvision reads them (latin1)."""
    with tarfile.open(archive) as tar:
        return {
            member.name: pickle.load(tar.extractfile(member), encoding="latin1")
            for member in tar.getmembers()
            if member.isfile()
        }


@pytest.fixture(scope="module")
def cifar10_dir(cifar10_mini, tmp_path_factory) -> Path:
    """A data directory holding only cifar-10-python.tar.gz, built from the mini JPEGs."""
    classes, train, test = imagefolder_splits(cifar10_mini)
    out = tmp_path_factory.mktemp("cifar10")
    write_cifar10(out, classes, train.shuffled(0), test.shuffled(0))
    return out


def test_cifar10_archive_has_the_release_layout(cifar10_dir):
    members = _members(cifar10_dir / CIFAR10_ARCHIVE)
    batches = [f"cifar-10-batches-py/data_batch_{n}" for n in range(1, 6)]
    assert sorted(members) == sorted(
        [*batches, "cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"]
    )
    for name in batches:  # the mini set's 2,000 training images in five equal batches
        batch = members[name]
        assert set(batch) == {"batch_label", "labels", "data", "filenames"}
        assert batch["data"].dtype == np.uint8 and batch["data"].shape == (400, 3072)
        assert len(batch["labels"]) == len(batch["filenames"]) == 400
        assert all(isinstance(label, int) for label in batch["labels"])
    test = members["cifar-10-batches-py/test_batch"]
    assert test["data"].shape == (1000, 3072) and test["batch_label"] == "testing batch 1 of 1"
    meta = members["cifar-10-batches-py/batches.meta"]
    assert meta["label_names"][0] == "airplane" and len(meta["label_names"]) == 10
    assert meta["num_vis"] == 3072
    train_labels = np.concatenate([members[name]["labels"] for name in batches])
    assert np.bincount(train_labels).tolist() == [200] * 10  # every image, once
    # Shuffled like the release: the first batch is not just the first two classes.
    assert len(set(members[batches[0]]["labels"])) == 10


def test_torchvision_reads_the_archive_once_md5_is_not_pinned(cifar10_dir, tmp_path):
    """torchvision pins the release's md5 sums, so its own class refuses rebuilt files; its
    reading code with the sums dropped (what archbench falls back to) loads them."""
    with tarfile.open(cifar10_dir / CIFAR10_ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        torchvision.datasets.CIFAR10(tmp_path, train=True, download=False)
    from archbench.data.torchvision_sets import _without_checksums

    train = _without_checksums(torchvision.datasets.CIFAR10)(tmp_path, train=True)
    assert train.data.shape == (2000, 32, 32, 3) and train.classes[-1] == "truck"
    image, label = train[0]
    assert image.size == (32, 32) and 0 <= label < 10


def test_cifar10_from_the_archive_is_imagefolder_pixel_for_pixel(
    cifar10_dir, cifar10_mini, tmp_path
):
    with pytest.warns(UserWarning, match=RELEASE_WARNING):
        archive = load_data(
            DataConfig("cifar10", data_dir=cifar10_dir, download=False, val_fraction=0)
        )
    folder = load_data(DataConfig(f"imagefolder:{cifar10_mini}", data_dir=tmp_path, val_fraction=0))
    assert archive.classes == folder.classes
    members = _members(cifar10_dir / CIFAR10_ARCHIVE)
    for split, batches in (
        ("train", [f"data_batch_{n}" for n in range(1, 6)]),
        ("test", ["test_batch"]),
    ):
        # The stated mapping: each row's filenames entry is its file, <class>/<name>, whose
        # position in ImageFolder's sorted order is the imagefolder: row.
        names = [n for b in batches for n in members[f"cifar-10-batches-py/{b}"]["filenames"]]
        order = {name: i for i, name in enumerate(sorted(names))}
        rows = torch.tensor([order[name] for name in names])
        ours, theirs = getattr(archive, split), getattr(folder, split)
        assert torch.equal(ours.images, theirs.images[rows])
        assert torch.equal(ours.labels, theirs.labels[rows])
    # The release's normalization, not statistics of the images (as for the real archive).
    assert archive.mean == (0.4914, 0.4822, 0.4465)


def test_damaged_or_incomplete_rebuilt_files_are_reported(cifar10_dir, tmp_path):
    """Without the md5 check, a damaged pickle must still fail (when read), never load."""
    with tarfile.open(cifar10_dir / CIFAR10_ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(ArchbenchError, match="cannot read dataset 'cifar10' .*look damaged"):
        load_data(DataConfig("cifar10", data_dir=tmp_path, download=False))
    batch.unlink()
    with pytest.raises(ArchbenchError, match="dataset 'cifar10' not found"):
        load_data(DataConfig("cifar10", data_dir=tmp_path, download=False))


def test_script_writes_once_and_replaces_only_with_force(
    cifar10_mini, cifar10_dir, tmp_path, capsys
):
    from benchmarks.make_cifar_archive import main as make_archive

    assert make_archive([str(cifar10_mini), str(tmp_path)]) == 0
    built = tmp_path / CIFAR10_ARCHIVE
    assert built.read_bytes() == (cifar10_dir / CIFAR10_ARCHIVE).read_bytes()  # seed 0 both
    (tmp_path / CIFAR10_FOLDER).mkdir()  # a stale extraction archbench would read first
    assert make_archive([str(cifar10_mini), str(tmp_path)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert make_archive([str(cifar10_mini), str(tmp_path), "--force", "--shuffle-seed", "-1"]) == 0
    assert not (tmp_path / CIFAR10_FOLDER).exists()
    first = _members(built)["cifar-10-batches-py/data_batch_1"]
    assert first["filenames"][:2] == ["airplane/0000.jpg", "airplane/0001.jpg"]  # folder order
    assert make_archive([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_same_images_give_the_same_archive_bytes(cifar10_mini, tmp_path):
    classes, train, test = imagefolder_splits(cifar10_mini)
    small = CifarSplit(train.images[::40], train.labels[::40], train.filenames[::40])
    paths = [write_cifar10(tmp_path / n, classes, small.shuffled(0), small) for n in "ab"]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    reshuffled = write_cifar10(tmp_path / "c", classes, small.shuffled(1), small)
    assert reshuffled.read_bytes() != paths[0].read_bytes()


def test_writer_refuses_what_the_format_cannot_hold(tmp_path):
    images = np.zeros((10, 3, 32, 32), np.uint8)
    labels = np.arange(10) % 2
    split = CifarSplit(images, labels, [f"{i}.png" for i in range(10)])
    with pytest.raises(ArchbenchError, match=r"uint8 \(N, 3, 32, 32\)"):
        write_cifar10(tmp_path, ["a", "b"], split._replace(images=images[:, :, :16]), split)
    with pytest.raises(ArchbenchError, match=r"labels must lie in 0..0"):
        write_cifar10(tmp_path, ["a"], split, split)
    with pytest.raises(ArchbenchError, match="one coarse label per image"):
        write_cifar100(tmp_path, ["a", "b"], ["x"], split, split)
    assert not list(tmp_path.iterdir())


def _synthetic_cifar100(per_class: np.ndarray, seed: int) -> CifarSplit:
    """Noise images, ``per_class[f]`` of fine label f, with the official coarse labels."""
    rng = np.random.default_rng(seed)
    fine = np.repeat(np.arange(100), per_class)
    coarse = np.asarray(CIFAR100_FINE_TO_COARSE)[fine]
    images = rng.integers(0, 256, (len(fine), 3, 32, 32), dtype=np.uint8)
    names = [f"{CIFAR100_FINE[label]}_{i}.png" for i, label in enumerate(fine)]
    return CifarSplit(images, fine, names, coarse).shuffled(seed)


@pytest.fixture(scope="module")
def cifar100_dir(tmp_path_factory) -> Path:
    """cifar-100-python.tar.gz: 10 training images per fine class; 1-3 test images (uneven,
    so each superclass's test count depends on which fine classes it holds)."""
    out = tmp_path_factory.mktemp("cifar100")
    train = _synthetic_cifar100(np.full(100, 10), seed=1)
    test = _synthetic_cifar100(1 + np.arange(100) % 3, seed=2)
    write_cifar100(out, CIFAR100_FINE, CIFAR100_COARSE, train, test)
    return out


def test_cifar100_archive_has_the_release_layout(cifar100_dir):
    members = _members(cifar100_dir / CIFAR100_ARCHIVE)
    assert sorted(members) == [f"cifar-100-python/{name}" for name in ("meta", "test", "train")]
    train = members["cifar-100-python/train"]
    assert set(train) == {"batch_label", "fine_labels", "coarse_labels", "data", "filenames"}
    assert train["data"].shape == (1000, 3072) and train["data"].dtype == np.uint8
    meta = members["cifar-100-python/meta"]
    assert meta["fine_label_names"] == CIFAR100_FINE
    assert meta["coarse_label_names"] == CIFAR100_COARSE
    assert sorted(set(train["coarse_labels"])) == list(range(20))


def test_cifar100_superclasses_regroup_onto_the_archives_coarse_labels(cifar100_dir):
    """The preset maps fine names to groups; every image must land on the coarse label the
    archive itself stores for it (read straight from the pickle, not through the preset)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", f".*{RELEASE_WARNING}")
        data = load_data(DataConfig("cifar100", data_dir=cifar100_dir, download=False))
    assert data.classes == CIFAR100_FINE
    group_map = load_regrouping("cifar100-superclasses").resolve(data.classes)
    grouped = regroup_data(data, group_map)
    assert grouped.classes == CIFAR100_COARSE == list(CIFAR100_SUPERCLASSES)
    members = _members(cifar100_dir / CIFAR100_ARCHIVE)
    test = members["cifar-100-python/test"]
    assert grouped.test.labels.tolist() == test["coarse_labels"]
    # train and val together are the archive's training rows; match them by image content.
    stored = {
        row.tobytes(): coarse
        for row, coarse in zip(
            members["cifar-100-python/train"]["data"],
            members["cifar-100-python/train"]["coarse_labels"],
            strict=True,
        )
    }
    for split in (grouped.train, grouped.val):
        rows = split.images.reshape(len(split), -1).numpy()
        assert [stored[row.tobytes()] for row in rows] == split.labels.tolist()


@pytest.mark.slow
def test_run_squeezenet_dsc_on_cifar100_profiles_top5(cifar100_dir, tmp_path):
    runs = tmp_path / "runs"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", f".*{RELEASE_WARNING}")
        code = main(
            ["run", "--arch", "squeezenet_dsc", "--dataset", "cifar100",
             "--data-dir", str(cifar100_dir), "--max-epochs", "1", "--train-limit", "100",
             "--runs-dir", str(runs),
             "--quiet", "--no-cold-start", *PROFILE_FAST]
        )  # fmt: skip
    assert code == 0
    (run,) = runs.iterdir()
    accuracy = json.loads((run / "profile.json").read_text())["accuracy"]
    assert accuracy["n"] == 199  # the archive's whole test split
    assert 0 <= accuracy["top1"] <= accuracy["top5"] <= 1
    assert len(accuracy["per_class"]) == 100


def test_run_with_cifar100_superclasses_scores_the_archives_coarse_labels(cifar100_dir, tmp_path):
    runs = tmp_path / "runs"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", f".*{RELEASE_WARNING}")
        code = main(
            ["run", "--arch", TINY_NET, "--dataset", "cifar100", "--regroup",
             "cifar100-superclasses", "--data-dir", str(cifar100_dir), "--max-epochs", "1",
             "--train-limit", "100", "--runs-dir", str(runs), "--quiet", "--no-cold-start",
             *PROFILE_FAST]
        )  # fmt: skip
    assert code == 0
    (run,) = runs.iterdir()
    accuracy = json.loads((run / "profile.json").read_text())["accuracy"]
    coarse = _members(cifar100_dir / CIFAR100_ARCHIVE)["cifar-100-python/test"]["coarse_labels"]
    assert [c["class"] for c in accuracy["per_class"]] == CIFAR100_COARSE
    assert [c["support"] for c in accuracy["per_class"]] == np.bincount(coarse).tolist()
    assert accuracy["top5"] is not None
