"""The feature cache shared by processes: a per-key lock, an atomic publish, a consistent key.

Two real processes miss the same key at once; the lock lets one extract while the other waits
and then reads the finished entry. The extraction is wrapped (in the child only) to count calls
and to last long enough that the two processes surely overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from archbench.data import DataConfig, load_data
from archbench.train.transfer import FeatureExtractor, FeatureKey, cached_features
from archbench.train.transfer.features import dataset_fingerprint
from tests.tiny_digits_net import build

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from archbench.data import DataConfig, load_data
    from archbench.train.transfer import FeatureExtractor, FeatureKey
    from archbench.train.transfer import features as cache
    from archbench.train.transfer.features import dataset_fingerprint
    from tests.tiny_digits_net import build

    work, name = Path(sys.argv[1]), sys.argv[2]
    data = load_data(DataConfig(dataset="digits", data_dir=work / "data"))
    torch.manual_seed(0)
    extractor = FeatureExtractor(build(10, 3), "avg")
    key = FeatureKey(
        backbone="tiny", weights_sha256=extractor.state_sha256(), pooling="avg",
        input_size=32, dataset="digits",
        dataset_fingerprint=dataset_fingerprint(data.test, data.mean, data.std), split="test",
    )
    real_extract = cache.extract

    def counted_extract(*args, **kwargs):
        with open(work / "extractions.log", "a") as log:
            log.write(name + "\\n")
        time.sleep(1.5)  # widen the window: the other process must arrive while this one works
        return real_extract(*args, **kwargs)

    cache.extract = counted_extract
    (work / f"ready-{name}").touch()
    while not all((work / f"ready-{n}").exists() for n in ("a", "b")):
        time.sleep(0.01)
    entry = cache.cached_features(
        extractor, data.test, key, data_dir=work / "data", mean=data.mean, std=data.std
    )
    total = float(entry.features.sum())
    print(json.dumps({"hit": entry.hit, "path": str(entry.path), "sum": total}))
    """
)


@pytest.mark.slow
def test_two_processes_missing_one_key_extract_it_once(tmp_path) -> None:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    load_data(DataConfig(dataset="digits", data_dir=tmp_path / "data"))  # both children read it
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), name],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in ("a", "b")
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert sorted(r["hit"] for r in results) == [False, True]  # one extracted, one read it
    assert len((tmp_path / "extractions.log").read_text().split()) == 1
    assert results[0]["path"] == results[1]["path"]
    assert results[0]["sum"] == results[1]["sum"]  # the same file, read back by both
    entry = Path(results[0]["path"])
    features = np.load(entry / "features.npy")
    manifest = json.loads((entry / "manifest.json").read_text())
    assert list(features.shape) == manifest["shape"] == [359, 16]
    assert np.isfinite(features).all()
    leftovers = [p.name for p in entry.parent.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert leftovers == []


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_data(DataConfig(dataset="digits", data_dir=tmp_path_factory.mktemp("data")))


def test_unaugmented_key_ignores_the_seed(digits) -> None:
    """Training (a head run's seed) and ``features``/``retrieval`` (no seed) name one entry."""
    common = dict(
        backbone="tiny", weights_sha256="0" * 64, pooling="avg", input_size=8, dataset="digits",
        dataset_fingerprint="f", split="test",
    )  # fmt: skip
    assert FeatureKey(**common, seed=3).digest() == FeatureKey(**common).digest()
    augmented = dict(common, augment="crop", copies=2)
    assert FeatureKey(**augmented, seed=3).digest() != FeatureKey(**augmented).digest()


@pytest.mark.slow
def test_a_head_run_with_seed_1_shares_its_entries_with_retrieval(tmp_path) -> None:
    """``run --finetune head --seed 1`` fills the cache; ``features`` of that run then hits."""
    from archbench.train.transfer.source import FeatureSource, source_features

    env = os.environ | {"PYTHONPATH": str(REPO), "ARCHBENCH_LOCK_DIR": str(tmp_path / "locks")}
    tiny = f"{REPO / 'tests' / 'tiny_digits_net.py'}:build"
    torch.manual_seed(0)
    torch.save(build(10, 1).state_dict(), tmp_path / "tiny.pth")
    done = subprocess.run(
        [sys.executable, "-m", "archbench", "run", "--arch", tiny, "--weights",
         str(tmp_path / "tiny.pth"), "--finetune", "head", "--seed", "1", "--max-epochs", "1",
         "--no-profile", "--quiet", "--threads", "1", "--runs-dir", str(tmp_path / "runs"),
         "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["transfer"]["feature_cache"]["status"] == "miss"
    found = source_features(
        FeatureSource(run_dir=run_dir, data_dir=tmp_path / "data"), splits=("train", "test")
    )
    assert {name: entry.hit for name, entry in found.splits.items()} == {
        "train": True,
        "test": True,
    }


def test_cached_features_feeds_channels_last_when_asked(tmp_path) -> None:
    data = load_data(DataConfig(dataset="digits", data_dir=tmp_path))  # (3, 32, 32) images
    extractor = FeatureExtractor(build(10, 3), "avg")
    seen: list[bool] = []
    extractor.network[0].register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    key = FeatureKey(
        backbone="tiny", weights_sha256=extractor.state_sha256(), pooling="avg", input_size=32,
        dataset="digits", split="test",
        dataset_fingerprint=dataset_fingerprint(data.test, data.mean, data.std),
    )  # fmt: skip
    cached_features(
        extractor, data.test, key, data_dir=tmp_path, mean=data.mean, std=data.std,
        channels_last=True,
    )  # fmt: skip
    assert seen and all(seen)
