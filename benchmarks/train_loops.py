"""The training loops ``train_throughput.py`` times: a reference-style loop and archbench's.

The reference loop is what the study's code (and most CIFAR tutorials) do: torchvision's
ImageFolder decoding JPEGs with per-image PIL transforms (random crop with 4-pixel padding,
horizontal flip, ToTensor, Normalize) fed by a DataLoader, and an eager model. archbench keeps the
decoded images in memory as uint8 tensors and augments whole batches. Both train the same network
with the same optimizer on the same real CIFAR-10 JPEGs. Also here: the host facts every result
carries (:func:`host_facts`).
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archbench.data import CIFAR_MEAN, CIFAR_STD, ImageData, load_data  # noqa: E402
from archbench.measure.complexity import count_macs  # noqa: E402
from archbench.measure.numerics import bf16_skip_reason  # noqa: E402
from archbench.measure.roofline import MachinePeak  # noqa: E402
from archbench.measure.sysinfo import describe_system  # noqa: E402
from archbench.train import RunLog, StopRequest, TrainConfig, Trainer  # noqa: E402
from architectures import create_arch  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
import inputs  # noqa: E402  (benchmarks/inputs.py: every script's input shapes)

# A training step costs about three forward passes: the forward, and a backward that computes
# both the input gradient and the weight gradient, each about one forward's multiply-adds.
TRAIN_PASSES_PER_IMAGE = 3
FLOP_CONVENTION = (
    "training FLOPs per image = forward MACs (fvcore) x 2 FLOPs per MAC x 3 "
    "(forward + input gradient + weight gradient)"
)


@dataclass(frozen=True)
class Loop:
    """What a timed loop runs: its steps and warm-up and archbench's options for it."""

    steps: int
    warmup: int
    batch_size: int
    options: dict


def extract(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / archive.name.removesuffix(".tar.gz")


def training_flops_per_image(arch: str, num_classes: int = 10) -> tuple[int, int]:
    """``arch``'s forward MACs per image (fvcore) and training FLOPs per image (see above)."""
    channels, height, width = inputs.input_shape(arch)
    model = create_arch(arch, num_classes=num_classes, in_channels=channels)
    macs = count_macs(model, (1, channels, height, width))
    return macs, macs * 2 * TRAIN_PASSES_PER_IMAGE


def reference_images_per_second(arch: str, root: Path, loop: Loop, workers: int) -> float:
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
        batch_size=loop.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    torch.manual_seed(0)
    model = create_arch(arch, num_classes=len(dataset.classes), in_channels=channels).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    done, seen, start = 0, 0, None
    while done < loop.warmup + loop.steps:
        for images, labels in loader:
            if done == loop.warmup:
                start, seen = time.perf_counter(), 0
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += labels.numel()
            done += 1
            if done >= loop.warmup + loop.steps:
                break
    return seen / (time.perf_counter() - start)


class TrainingData:
    """The extracted image folder's training data, loaded once per input shape."""

    def __init__(self, root: Path, data_dir: Path) -> None:
        self.root, self.data_dir = root, data_dir
        self._loaded: dict[tuple[int, int, int], ImageData] = {}

    def config(self, arch: str, batch_size: int, **options) -> TrainConfig:
        config = TrainConfig(
            arch=arch,
            dataset=f"imagefolder:{self.root}",
            batch_size=batch_size,
            data_dir=str(self.data_dir),
            **options,
        ).resolve_input_shape()
        return config

    def load(self, config: TrainConfig) -> ImageData:
        if config.input_shape not in self._loaded:
            self._loaded[config.input_shape] = load_data(config.data_config(download=False))
        return self._loaded[config.input_shape]


@contextmanager
def throwaway_trainer(config: TrainConfig, data: ImageData):
    """archbench's :class:`Trainer` for ``config``, quiet, in a temporary run directory."""
    config = config.resolved(data)
    config.validate()
    with tempfile.TemporaryDirectory() as run_dir:
        console = Console(quiet=True)
        log = RunLog(Path(run_dir) / "log", console, True)
        yield Trainer(config, data, Path(run_dir), log, console)


class _TimedSteps(StopRequest):
    """Stops the epoch after warm-up + steps batches and times the steps after warm-up."""

    def __init__(self, warmup: int, steps: int) -> None:
        super().__init__()
        self.warmup, self.steps = warmup, steps
        self.calls, self.start, self.stop_time = 0, None, None

    def __bool__(self) -> bool:
        if self.calls == self.warmup:
            self.start = time.perf_counter()
        self.calls += 1
        if self.calls > self.warmup + self.steps:
            self.stop_time = self.stop_time or time.perf_counter()
            return True
        return False


def archbench_images_per_second(arch: str, data: TrainingData, loop: Loop) -> float:
    """archbench's own trainer (its defaults, or ``loop.options``), stepping real batches."""
    config = data.config(arch, loop.batch_size, **loop.options)
    with throwaway_trainer(config, data.load(config)) as trainer:
        timed = _TimedSteps(loop.warmup, loop.steps)
        while timed.stop_time is None:  # a short epoch: go on into the next one
            trainer.train_one_epoch(timed)
        return loop.steps * loop.batch_size / (timed.stop_time - timed.start)


def host_facts() -> dict:
    """The machine, its bf16 support, threads, versions and how busy it is right now."""
    reason = bf16_skip_reason()
    return {
        **describe_system(),
        "bf16_native": reason is None,
        "bf16_note": reason,
        "interop_threads": torch.get_num_interop_threads(),
        "load_average": list(os.getloadavg()),
    }


def print_host(host: dict, peak: MachinePeak | None) -> None:
    print(
        f"# {host['cpu_model']} | {host['logical_cores']} cores | torch "
        f"{host['versions']['torch']} | threads {host['torch_threads']} (inter-op "
        f"{host['interop_threads']}) | native bf16: {'yes' if host['bf16_native'] else 'no'} "
        f"| load average {' '.join(f'{v:.2f}' for v in host['load_average'])}"
    )
    if peak is not None:
        probes = ", ".join(f"{name} {value:.0f}" for name, value in peak.probes.items())
        print(f"# fp32 peak {peak.gflops:.0f} GFLOP/s (best of: {probes})")
        print(f"# {FLOP_CONVENTION}")
