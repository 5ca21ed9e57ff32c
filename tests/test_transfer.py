"""Transfer learning pieces on real models and data: weights, freezing, features, the cache.

The backbone is one archbench trained itself on the shared CIFAR-10 mini JPEGs (no downloads);
the target set is the embedded digits.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from archbench.data import BatchLoader, DataConfig, load_data
from archbench.errors import ArchbenchError
from archbench.evaluate.retrieval import RetrievalConfig, evaluate_retrieval
from archbench.train.transfer import (
    FeatureBatches,
    FeatureExtractor,
    FeatureKey,
    TransferHead,
    apply_finetune,
    cached_features,
    feature_dim,
    load_weights,
    resolve_weights,
)
from archbench.train.transfer.features import dataset_fingerprint
from archbench.train.transfer.weights import file_sha256
from architectures import create_arch

REPO = Path(__file__).resolve().parents[1]
RESNET18 = "torchvision.models:resnet18"


def archbench_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # A lock directory of its own: other archbench jobs on this machine must not pause the test.
    env = os.environ | {"PYTHONPATH": str(REPO), "ARCHBENCH_LOCK_DIR": str(cwd / "locks")}
    return subprocess.run(
        [sys.executable, "-m", "archbench", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def backbone_run(cifar_mini_run) -> Path:
    """squeezenet_dsc trained by archbench for 1 epoch on the CIFAR-10 mini JPEGs (shared)."""
    return cifar_mini_run.run_dir


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_data(DataConfig(dataset="digits", data_dir=tmp_path_factory.mktemp("data")))


def extractor_from(run_dir: Path, pooling: str = "avg") -> FeatureExtractor:
    network = create_arch("squeezenet_dsc", num_classes=10)
    load_weights(network, resolve_weights(str(run_dir), "squeezenet_dsc"))
    return FeatureExtractor(network, pooling)


def test_torchvision_resnet18_from_a_state_dict_file_skips_only_the_classifier(tmp_path) -> None:
    source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    weights = resolve_weights(str(tmp_path / "resnet18.pth"), "torchvision.models:resnet18")
    assert weights.kind == "file" and len(weights.sha256) == 64
    target = torchvision.models.resnet18(num_classes=10)  # create_arch after issue 18
    report = load_weights(target, weights)
    assert report.skipped == ("fc.weight", "fc.bias")
    assert torch.equal(target.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert target.fc.weight.shape == (10, 512)
    # Its features: the input of torchvision's avgpool, pooled by us; equal to resnet's own.
    extractor = FeatureExtractor(target, "avg").eval()
    source.fc = torch.nn.Identity()
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(extractor(images), source.eval()(images), atol=1e-5)


def test_run_directory_weights_fit_another_class_count(backbone_run) -> None:
    weights = resolve_weights(str(backbone_run), "squeezenet_dsc")
    assert weights.kind == "run" and weights.path.name == "best.pt"
    network = create_arch("squeezenet_dsc", num_classes=7)
    report = load_weights(network, weights)
    assert set(report.skipped) == {
        "classifier.0.conv.weight", "classifier.0.conv.bias", "classifier.0.bn.weight",
        "classifier.0.bn.bias", "classifier.0.bn.running_mean", "classifier.0.bn.running_var",
    }  # fmt: skip


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p / "notes.pt").write_text("not torch"), "is not a state dict"),
        (lambda p: torch.save([1, 2, 3], p / "notes.pt"), "holds list"),
    ],
)
def test_a_file_that_is_not_a_state_dict_is_one_line(tmp_path, make, message) -> None:
    make(tmp_path)
    with pytest.raises(ArchbenchError, match=message):
        resolve_weights(str(tmp_path / "notes.pt"), "squeezenet_dsc")


def test_incomplete_run_and_unknown_names_are_refused(tmp_path, backbone_run) -> None:
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "best.pt"):
        (unfinished / name).write_bytes((backbone_run / name).read_bytes())
    (unfinished / "result.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(ArchbenchError, match="running, not complete"):
        resolve_weights(str(unfinished), "squeezenet_dsc")
    with pytest.raises(ArchbenchError, match="unknown weights 'IMAGENET9K_V9'.*IMAGENET1K_V1"):
        resolve_weights("IMAGENET9K_V9", "torchvision.models:resnet18")
    with pytest.raises(ArchbenchError, match="needs a torchvision.models:NAME network"):
        resolve_weights("IMAGENET1K_V1", "squeezenet_dsc")
    with pytest.raises(ArchbenchError, match="do not fit"):
        load_weights(create_arch("mobilenet"), resolve_weights(str(backbone_run), "mobilenet"))


def test_a_weights_name_missing_from_the_hub_cache_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ArchbenchError, match="not in the torch hub cache .*resnet18-f37072fd"):
        resolve_weights("IMAGENET1K_V1", "torchvision.models:resnet18")


def test_last_block_trains_only_the_last_fire_and_the_classifier(digits) -> None:
    torch.manual_seed(0)
    network = create_arch("squeezenet_dsc", num_classes=10)
    report = apply_finetune(network, "last-block")
    assert report.trainable == ("features.11", "classifier")
    frozen_bn = network.features[3].squeeze[1]
    before = frozen_bn.running_mean.clone()
    network.train()
    images = torch.randn(8, 3, 32, 32)
    F.cross_entropy(network(images), torch.arange(8)).backward()
    assert torch.equal(frozen_bn.running_mean, before)  # eval mode kept inside model.train()
    assert network.features[0].conv.weight.grad is None
    assert network.features[11].squeeze[0].weight.grad is not None
    assert network.classifier[0].conv.weight.grad is not None
    everything = apply_finetune(create_arch("squeezenet_dsc"), "all")
    assert everything.frozen_params == 0 and report.frozen_params > report.trainable_params


@pytest.mark.slow
def test_feature_cache_misses_then_hits_and_keys_on_pooling(tmp_path, backbone_run, digits):
    extractor = extractor_from(backbone_run)
    key = FeatureKey(
        backbone="squeezenet_dsc", weights_sha256=extractor.state_sha256(), pooling="avg",
        input_size=32, dataset="digits",
        dataset_fingerprint=dataset_fingerprint(digits.test, digits.mean, digits.std),
        split="test",
    )  # fmt: skip
    options = dict(data_dir=tmp_path, mean=digits.mean, std=digits.std)
    first = cached_features(extractor, digits.test, key, **options)
    second = cached_features(extractor, digits.test, key, **options)
    assert (first.hit, second.hit) == (False, True)
    assert second.features.shape == (359, 512) and second.features.dtype == "float32"
    assert isinstance(second.features, __import__("numpy").memmap)
    manifest = json.loads((second.path / "manifest.json").read_text())
    assert manifest["key"]["split"] == "test" and manifest["bytes"] == 359 * 512 * 4
    assert manifest["images_per_second"] > 0
    features, labels = second.tensors()
    assert torch.equal(labels, digits.test.labels)
    maxed = FeatureExtractor(extractor.network, "max")
    max_key = FeatureKey(**{**key.__dict__, "pooling": "max"})
    assert not cached_features(maxed, digits.test, max_key, **options).hit
    copies_key = FeatureKey(**{**key.__dict__, "augment": "crop", "copies": 2})
    copies = cached_features(extractor, digits.test, copies_key, **options)
    assert copies.features.shape == (2, 359, 512)
    assert not torch.equal(*[torch.from_numpy(copies.features[i].copy()) for i in (0, 1)])
    # Real features find a digit's class well above chance (0.23 against 0.10 here).
    retrieval = evaluate_retrieval(
        features, labels, RetrievalConfig(ks=(10,), gallery=200, queries=300, repeats=3),
        class_names=digits.classes,
    )  # fmt: skip
    overall = retrieval["overall"]
    assert overall["precision"]["10"] > overall["chance"] + 0.08


@pytest.mark.slow
def test_head_from_the_cache_equals_the_head_through_the_frozen_backbone(
    tmp_path, backbone_run, digits
) -> None:
    """Same seed, same batches, no augmentation: the two paths train the same classifier.

    The 145 validation digits stand in for a training split, so the through-backbone path
    stays quick; the trainer uses exactly these loaders (``FeatureBatches`` / ``BatchLoader``).
    """
    split = digits.val
    extractor = extractor_from(backbone_run)
    torch.manual_seed(0)
    through = TransferHead(extractor, feature_dim(extractor, (3, 32, 32)), 10)
    cached_head = copy.deepcopy(through.classifier)
    key = FeatureKey(
        "squeezenet_dsc", extractor.state_sha256(), "avg", 32, "digits",
        dataset_fingerprint(split, digits.mean, digits.std), "val",
    )  # fmt: skip
    entry = cached_features(extractor, split, key, data_dir=tmp_path, mean=digits.mean,
                            std=digits.std)  # fmt: skip
    images = BatchLoader(split, batch_size=32, mean=digits.mean, std=digits.std,
                         shuffle=True, seed=5)  # fmt: skip
    features = FeatureBatches(*entry.tensors(), batch_size=32, shuffle=True, seed=5)
    losses = {"through": [], "cached": []}
    for name, model, loader in (
        ("through", through, images),
        ("cached", cached_head, features),
    ):
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=0.01)
        for epoch in range(3):
            model.train()
            loader.set_epoch(epoch)
            for inputs, labels in loader:
                loss = F.cross_entropy(model(inputs), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses[name].append(loss.item())
    assert losses["through"] == pytest.approx(losses["cached"], abs=1e-4)
    assert torch.allclose(through.classifier.weight, cached_head.weight, atol=1e-4)
    with torch.inference_mode():
        test_images = BatchLoader(digits.test, batch_size=512, mean=digits.mean, std=digits.std,
                                  shuffle=False)  # fmt: skip
        inputs, _ = next(iter(test_images))
        through.eval()
        assert torch.equal(through(inputs).argmax(1), cached_head(extractor(inputs)).argmax(1))


# --- the command line: archbench run --weights/--finetune, features, retrieval -----------------


@pytest.fixture(scope="module")
def head_runs(tmp_path_factory, backbone_run) -> tuple[Path, Path, Path]:
    """The same head run twice (miss, then hit), in-process, with its own data cache and lock."""
    root = tmp_path_factory.mktemp("heads")
    run_dirs = []
    for attempt in ("first", "second"):
        status = run_cli(
            root, "run", "--arch", "squeezenet_dsc", "--weights", str(backbone_run),
            "--finetune", "head", "--dataset", "digits", "--max-epochs", "3", "--no-profile",
            "--quiet", "--runs-dir", str(root / attempt), "--data-dir", str(root / "data"),
        )  # fmt: skip
        assert status == 0
        (run_dir,) = (root / attempt).iterdir()
        run_dirs.append(run_dir)
    return run_dirs[0], run_dirs[1], root


def run_cli(root: Path, *args: str) -> int:
    from archbench.cli import main

    previous = os.environ.get("ARCHBENCH_LOCK_DIR")
    os.environ["ARCHBENCH_LOCK_DIR"] = str(root / "locks")
    try:
        return main(list(args))
    finally:
        if previous is None:
            del os.environ["ARCHBENCH_LOCK_DIR"]
        else:
            os.environ["ARCHBENCH_LOCK_DIR"] = previous


@pytest.mark.slow
def test_a_head_run_misses_then_hits_the_feature_cache(head_runs, backbone_run) -> None:
    first, second, _ = head_runs
    configs = [json.loads((run / "config.json").read_text()) for run in (first, second)]
    assert [c["transfer"]["feature_cache"]["status"] for c in configs] == ["miss", "hit"]
    transfer = configs[0]["transfer"]
    assert transfer["finetune"] == "head" and transfer["pooling"] == "avg"
    assert transfer["weights"]["sha256"] == file_sha256(backbone_run / "best.pt")
    assert transfer["weights"]["skipped_keys"] == []
    assert configs[0]["train"]["augment"] == "none"  # the cache's condition (seed 003)
    assert "feature cache hit" in (second / "train.log").read_text()
    results = [json.loads((run / "result.json").read_text()) for run in (first, second)]
    assert results[0]["status"] == "complete"
    assert results[0]["test_top1"] == results[1]["test_top1"]
    metrics = [(run / "metrics.csv").read_text().splitlines() for run in (first, second)]
    untimed = [[",".join(line.split(",")[:9]) for line in lines] for lines in metrics]
    assert untimed[0] == untimed[1]  # cached features: the same training, epoch by epoch


@pytest.mark.slow
def test_finetune_all_trains_the_whole_pretrained_network(tmp_path, backbone_run) -> None:
    status = run_cli(
        tmp_path, "run", "--arch", "squeezenet_dsc", "--weights", str(backbone_run),
        "--dataset", "digits", "--max-epochs", "1", "--no-profile", "--quiet",
        "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert status == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["finetune"] == "all" and config["train"]["augment"] == "crop"
    assert config["transfer"]["trainable"]["frozen_params"] == 0
    assert "feature_cache" not in config["transfer"]


def test_retrieval_on_a_head_run_writes_precision_and_chance(head_runs, capsys) -> None:
    first, _, root = head_runs
    assert run_cli(root, "retrieval", str(first), "--k", "10,20", "--repeats", "2") == 0
    result = json.loads((first / "retrieval.json").read_text())
    assert result["ks"] == [10, 20] and result["features"]["splits"]["train"]["hit"]
    assert len(result["per_class"]) == 10
    for entry in result["per_class"] + [result["overall"]]:
        assert set(entry["precision"]) == {"10", "20"} and 0 < entry["chance"] < 0.2
    assert result["protocol"]["queries"] == 2000
    assert result["overall"]["precision"]["10"] > result["overall"]["chance"]
    assert "chance" in capsys.readouterr().out
    assert run_cli(root, "retrieval", str(first), "--gallery", "train", "--queries", "test") == 0
    split_result = json.loads((first / "retrieval.json").read_text())
    assert split_result["protocol"]["queries"] == 359
    report = root / "report.md"
    assert run_cli(root, "report", str(first), "--out", str(report)) == 0
    text = report.read_text()
    assert "## Transfer learning" in text and "| head " in text and "| miss " in text
    assert f"## Retrieval: {first.name}" in text and "| overall " in text


def test_features_command_reports_the_cache(head_runs, capsys) -> None:
    first, _, root = head_runs
    capsys.readouterr()
    assert run_cli(root, "features", str(first), "--format", "json") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["feature_dim"] == 512 and record["splits"]["test"]["shape"] == [359, 512]
    assert all(entry["hit"] for entry in record["splits"].values())


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--weights", "IMAGENET9K_V9", "--arch", "torchvision.models:resnet18"],
            "unknown weights",
        ),
        (["--weights", "NOTES"], "not a state dict"),
        (["--weights", "UNFINISHED"], "not complete"),
        (["--weights", "BACKBONE", "--augment-copies", "2"], "needs --finetune head"),
    ],
)
def test_bad_transfer_input_is_one_line_and_writes_nothing(
    tmp_path, backbone_run, capsys, args, message
) -> None:
    (tmp_path / "notes.pt").write_text("not torch")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((backbone_run / "config.json").read_text())
    (unfinished / "result.json").write_text(json.dumps({"status": "interrupted"}))
    places = {"NOTES": str(tmp_path / "notes.pt"), "UNFINISHED": str(unfinished),
              "BACKBONE": str(backbone_run)}  # fmt: skip
    args = [places.get(arg, arg) for arg in args]
    if "--arch" not in args:
        args += ["--arch", "squeezenet_dsc"]
    runs_dir = tmp_path / "runs"
    status = run_cli(
        tmp_path, "run", *args, "--dataset", "digits", "--runs-dir", str(runs_dir),
        "--data-dir", str(tmp_path / "data"), "--no-profile", "--quiet",
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--weights", "w.pt", "--task", "multilabel"], "single-label classification only"),
        (["retrieval", "--arch", "squeezenet_dsc", "--out", "OUT"], "retrieval judges one class"),
    ],
)
def test_multilabel_is_refused_by_transfer_before_anything_is_written(
    tmp_path, capsys, args, message
) -> None:
    """Pretrained heads, the feature cache and retrieval keep one class per image."""
    out, runs_dir = tmp_path / "retrieval.json", tmp_path / "runs"
    args = [str(out) if arg == "OUT" else arg for arg in args]
    status = run_cli(
        tmp_path, *args, "--dataset", "digits-mosaic", "--data-dir", str(tmp_path / "data"),
        *(["--runs-dir", str(runs_dir), "--no-profile", "--quiet"] if args[0] == "run" else []),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "data" / "features").exists()
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_an_interrupted_head_run_resumes_to_the_uninterrupted_result(
    tmp_path, head_runs, backbone_run
) -> None:
    """Ctrl-C after epoch 1 of a pretrained run, then ``--resume``: the same epochs and result as
    the head run that was never interrupted, with its transfer record kept."""
    import signal

    from rich.console import Console

    from archbench.train import TrainConfig, train_run

    uninterrupted, _, root = head_runs
    config = TrainConfig(
        arch="squeezenet_dsc", weights=str(backbone_run), finetune="head", dataset="digits",
        max_epochs=3, runs_dir=str(tmp_path / "runs"), data_dir=str(root / "data"),
    )  # fmt: skip
    quiet = Console(quiet=True)

    def interrupt_after_first_epoch(row: dict) -> None:
        if row["epoch"] == 1:
            signal.raise_signal(signal.SIGINT)  # the real handler, as Ctrl-C would

    stopped = train_run(config, console=quiet, quiet=True, on_epoch_end=interrupt_after_first_epoch)
    assert stopped.status == "interrupted" and stopped.result["epochs_run"] == 1
    resumed = train_run(TrainConfig(), console=quiet, quiet=True, resume=stopped.run_dir)
    assert resumed.status == "complete" and resumed.result["epochs_run"] == 3
    untimed = [
        [",".join(line.split(",")[:9]) for line in (run / "metrics.csv").read_text().splitlines()]
        for run in (uninterrupted, stopped.run_dir)
    ]
    assert untimed[0] == untimed[1]
    reference = json.loads((uninterrupted / "result.json").read_text())
    assert resumed.result["test_top1"] == pytest.approx(reference["test_top1"])
    transfer = json.loads((stopped.run_dir / "config.json").read_text())["transfer"]
    assert transfer["finetune"] == "head" and transfer["weights"]["sha256"] == file_sha256(
        backbone_run / "best.pt"
    )
