"""Transfer learning speed: a head trained from the feature cache against through the backbone.

Seed 004 claims a head on stored features trains "hundreds of times faster" than through the
network. Here both paths train the same new linear classifier (same seed, same batches, no
augmentation) on the embedded digits training split (1,293 images) with Adam, lr 0.01, batch
128: once from cached features (:class:`FeatureBatches`), once through the frozen backbone
(:class:`TransferHead`, what ``--finetune head`` runs when the cache is bypassed). We report the
median seconds per epoch of each, the speed-up, and both test accuracies (they must agree).
Then feature extraction images/s per backbone at 32 and at 224 pixels (the batch is resized
inside the extractor, as ``input_size`` does).

Backbone weights are a seeded random initialization unless ``--weights`` names a file or run
directory: speed does not depend on the values, and nothing is downloaded.

    python benchmarks/transfer_speed.py                       # squeezenet_dsc and resnet18
    python benchmarks/transfer_speed.py --sizes 32 --epochs 2 --extract-images 128
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archbench.data import BatchLoader, DataConfig, load_data  # noqa: E402
from archbench.measure.sysinfo import describe_system  # noqa: E402
from archbench.train.transfer import (  # noqa: E402
    FeatureBatches,
    FeatureExtractor,
    TransferHead,
    extract,
    feature_dim,
    load_weights,
    resolve_weights,
)
from architectures import create_arch  # noqa: E402

HEAD_BACKBONES = ("squeezenet_dsc", "torchvision.models:resnet18")
EXTRACT_BACKBONES = (
    "squeezenet_dsc",
    "mobilenet",
    "torchvision.models:resnet18",
    "torchvision.models:mobilenet_v2",
)


def build_extractor(arch: str, size: int, weights: str | None) -> FeatureExtractor:
    torch.manual_seed(0)
    if arch.startswith("torchvision.models:"):  # builders that take no in_channels
        import torchvision.models

        network = torchvision.models.get_model(arch.partition(":")[2], num_classes=10)
    else:
        network = create_arch(arch, num_classes=10)
    if weights:
        load_weights(network, resolve_weights(weights, arch))
    return FeatureExtractor(network, "avg", input_size=None if size == 32 else size).eval()


def train_epochs(model, loader, epochs: int) -> list[float]:
    """Seconds per epoch of a plain training loop (the trainer's, minus its bookkeeping)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=0.01)
    seconds = []
    for epoch in range(epochs):
        model.train()
        loader.set_epoch(epoch)
        start = time.perf_counter()
        for inputs, labels in loader:
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


@torch.inference_mode()
def accuracy(model, features: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return (model(features).argmax(1) == labels).float().mean().item()


def head_speed(arch: str, size: int, epochs: int, data, weights: str | None) -> dict:
    extractor = build_extractor(arch, size, weights)
    torch.manual_seed(1)
    image_shape = tuple(data.train.images.shape[1:])  # what the extractor is fed
    through = TransferHead(extractor, feature_dim(extractor, image_shape), data.num_classes)
    head = copy.deepcopy(through.classifier)  # the same initial classifier for both paths
    options = dict(mean=data.mean, std=data.std)
    start = time.perf_counter()
    train_features = extract(extractor, data.train, **options)
    extraction = time.perf_counter() - start
    test_features = extract(extractor, data.test, **options)
    cached = train_epochs(
        head, FeatureBatches(train_features, data.train.labels, batch_size=128, shuffle=True),
        epochs,
    )  # fmt: skip
    images = BatchLoader(data.train, batch_size=128, shuffle=True, **options)
    live = train_epochs(through, images, epochs)
    return {
        "backbone": arch,
        "input": size,
        "extract_s": round(extraction, 2),
        "cache_epoch_s": statistics.median(cached),
        "backbone_epoch_s": statistics.median(live),
        "speedup": statistics.median(live) / statistics.median(cached),
        "acc_cache": accuracy(head, test_features, data.test.labels),
        "acc_backbone": accuracy(through.classifier, test_features, data.test.labels),
    }


def extraction_speed(arch: str, size: int, images: int, data, weights: str | None) -> float:
    extractor = build_extractor(arch, size, weights)
    split = data.train.subset(torch.arange(images))
    extract(extractor, data.train.subset(torch.arange(16)), mean=data.mean, std=data.std)
    start = time.perf_counter()
    extract(extractor, split, mean=data.mean, std=data.std, batch_size=64)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sizes", default="32,224", help="input sizes (default 32,224)")
    parser.add_argument("--head-sizes", default="32,224", help="input sizes for the head timing")
    parser.add_argument("--extract-images", type=int, default=256)
    parser.add_argument("--weights", help="a state-dict file or run directory for squeezenet_dsc")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    system = describe_system()
    print(f"# {system['cpu_model']}, {args.threads} threads, "
          f"torch {torch.__version__}")  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        data = load_data(DataConfig(dataset="digits", data_dir=Path(cache)))
    print(
        "\n| backbone | input | head epoch from cache s | through backbone s | speed-up "
        "| test top-1 cache | test top-1 through |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for size in (int(s) for s in args.head_sizes.split(",")):
        for arch in HEAD_BACKBONES:
            weights = args.weights if arch == "squeezenet_dsc" else None
            row = head_speed(arch, size, args.epochs, data, weights)
            print(f"| {arch} | {size} | {row['cache_epoch_s']:.4f} | "
                  f"{row['backbone_epoch_s']:.2f} | {row['speedup']:.0f}x | "
                  f"{row['acc_cache']:.4f} | {row['acc_backbone']:.4f} |", flush=True)  # fmt: skip
    print("\n| backbone | input | extraction images/s |\n|---|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        count = args.extract_images if size <= 64 else max(32, args.extract_images // 4)
        for arch in EXTRACT_BACKBONES:
            rate = extraction_speed(arch, size, count, data, None)
            print(f"| {arch} | {size} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
