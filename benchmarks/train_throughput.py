"""Training throughput: archbench's trainer against a reference-style loop, in one run.

The reference loop is what the study's code (and most CIFAR tutorials) do: torchvision's
ImageFolder decoding JPEGs with per-image PIL transforms (random crop with 4-pixel padding,
horizontal flip, ToTensor, Normalize) fed by a DataLoader, and an eager model. archbench keeps the
decoded images in memory as uint8 tensors and augments whole batches. Both train the same network
with the same optimizer on the same real CIFAR-10 JPEGs; we time a fixed number of steps after a
warm-up and print images/s and the ratio.

Variants of archbench: its defaults (fp32, channels_last), ``--no-channels-last`` (the in-memory
pipeline alone), ``--precision bf16`` (autocast mixed precision) and, with ``--compile``,
``torch.compile`` (which gets 15 warm-up steps, as it compiles on the first ones).

    python benchmarks/train_throughput.py                     # mini CIFAR-10 set, both networks
    python benchmarks/train_throughput.py --compile --steps 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archbench.data import CIFAR_MEAN, CIFAR_STD, DataConfig, load_data  # noqa: E402
from archbench.measure.sysinfo import describe_system  # noqa: E402
from archbench.train import StopRequest as _StopRequest  # noqa: E402
from archbench.train import TrainConfig, Trainer  # noqa: E402
from architectures import create_arch  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
import inputs  # noqa: E402  (benchmarks/inputs.py: every script's input shapes)


def extract(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / archive.name.removesuffix(".tar.gz")


def reference_images_per_second(
    arch: str, root: Path, steps: int, warmup: int, batch_size: int, workers: int
) -> float:
    """A torchvision ImageFolder + PIL transforms + DataLoader + eager model loop."""
    from torchvision import datasets, transforms

    channels, height, width = inputs.input_shape(arch)  # the CIFAR JPEGs fitted to it
    fit = [transforms.Grayscale()] if channels == 1 else []
    fit += [transforms.Resize((height, width))] if (height, width) != (32, 32) else []
    mean = CIFAR_MEAN if channels == 3 else (sum(CIFAR_MEAN) / 3,)
    std = CIFAR_STD if channels == 3 else (sum(CIFAR_STD) / 3,)
    transform = transforms.Compose(
        [
            *fit,
            transforms.RandomCrop((height, width), padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    dataset = datasets.ImageFolder(root / "train", transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    torch.manual_seed(0)
    model = create_arch(arch, num_classes=len(dataset.classes), in_channels=channels).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    done, seen, start = 0, 0, None
    while done < warmup + steps:
        for images, labels in loader:
            if done == warmup:
                start, seen = time.perf_counter(), 0
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += labels.numel()
            done += 1
            if done >= warmup + steps:
                break
    return seen / (time.perf_counter() - start)


def archbench_images_per_second(
    arch: str, root: Path, steps: int, warmup: int, batch_size: int, data_dir: Path, **options
) -> float:
    """archbench's own trainer (its defaults, or ``options``), stepping the same batches."""
    config = TrainConfig(
        arch=arch,
        dataset=f"imagefolder:{root}",
        batch_size=batch_size,
        data_dir=str(data_dir),
        **options,
    )
    data = load_data(DataConfig(dataset=config.dataset, data_dir=data_dir, val_fraction=0.1))
    config = config.resolved(data)

    class Budget(_StopRequest):
        """Stops the epoch after warm-up + steps batches and times the steps after warm-up."""

        def __init__(self) -> None:
            super().__init__()
            self.calls, self.start, self.stop_time = 0, None, None

        def __bool__(self) -> bool:
            if self.calls == warmup:
                self.start = time.perf_counter()
            self.calls += 1
            if self.calls > warmup + steps:
                self.stop_time = self.stop_time or time.perf_counter()
                return True
            return False

    with tempfile.TemporaryDirectory() as run_dir:
        from rich.console import Console

        from archbench.train import RunLog

        console = Console(quiet=True)
        trainer = Trainer(
            config, data, Path(run_dir), RunLog(Path(run_dir) / "log", console, True), console
        )
        budget = Budget()
        while budget.stop_time is None:
            trainer.train_one_epoch(budget)
        return steps * batch_size / (budget.stop_time - budget.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archive", type=Path, default=REPO.parent / "shared" / "data" / "cifar10-jpg-mini.tar.gz"
    )
    parser.add_argument("--archs", default="squeezenet_dsc,squeezenet")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="median of this many loops")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--compile", action="store_true", help="also time archbench --compile")
    args = parser.parse_args()

    system = describe_system()
    print(
        f"# {system['cpu_model']} | {system['logical_cores']} cores | torch {torch.__version__} "
        f"| threads {torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        root = extract(args.archive, Path(scratch))
        data_dir = Path(scratch) / "cache"
        variants = {
            "archbench": {},
            "no channels_last": {"channels_last": False},
            "bf16": {"precision": "bf16"},
        }
        if args.compile:
            variants["compile"] = {"compile": True}
        print("| arch | reference img/s | " + " | ".join(f"{v} img/s (ratio)" for v in variants))
        print("|---|---:|" + "---:|" * len(variants))
        for arch in args.archs.split(","):
            # Repeats are interleaved (reference, variants, reference, ...) so a slow spell of
            # the machine hits every loop alike; each figure is the median of its repeats.
            rates: dict[str, list[float]] = {"reference": [], **{v: [] for v in variants}}
            for _ in range(args.repeats):
                rates["reference"].append(
                    reference_images_per_second(
                        arch, root, args.steps, args.warmup, args.batch_size, args.workers
                    )
                )
                for name, options in variants.items():
                    warmup = max(args.warmup, 15) if options.get("compile") else args.warmup
                    rates[name].append(
                        archbench_images_per_second(
                            arch, root, args.steps, warmup, args.batch_size, data_dir, **options
                        )
                    )
            ref = statistics.median(rates["reference"])
            cells = []
            for name in variants:
                rate = statistics.median(rates[name])
                cells.append(f"{rate:.0f} ({rate / ref:.2f}x)")
            print(f"| {arch} | {ref:.0f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
