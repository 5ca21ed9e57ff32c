"""The fresh interpreter behind :mod:`archbench.measure.memory`'s CPU probes (run by path).

``python memory_child.py SPEC_JSON`` loads the dataset, and unless ``"baseline": true`` runs
``steps`` training steps at ``batch``, then prints its peak resident memory as one JSON line.
The baseline loads the same modules and the same dataset, so the difference is the training.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from archbench.data import DataConfig, load_data, normalize
from archbench.measure.coldstart_child import peak_rss_bytes
from architectures import create_arch


def load_training_images(dataset: str, data_dir: str | Path | None):
    """The training split as uint8 images with labels, its normalization, the class count."""
    data = load_data(
        DataConfig(dataset=dataset, data_dir=Path(data_dir) if data_dir else None, download=False)
    )
    return (data.train.images, data.train.labels, (data.mean, data.std)), data.num_classes


def training_steps(
    arch: str, num_classes: int, images, batch: int, steps: int, device: str
) -> None:
    """``steps`` Adam training steps on ``batch`` real images (cycled if there are fewer)."""
    (uint8_images, labels, (mean, std)) = images
    index = torch.arange(batch) % uint8_images.shape[0]
    x = normalize(uint8_images[index], mean, std).to(device)
    y = labels[index].to(device)
    torch.manual_seed(0)
    model = create_arch(arch, num_classes=num_classes).to(device)
    if device == "cpu":  # the trainer's CPU default
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    torch.set_num_threads(int(spec["threads"]))
    images, num_classes = load_training_images(spec["dataset"], spec.get("data_dir"))
    baseline = peak_rss_bytes()  # the imports and the dataset: what training adds is the rest
    training_steps(
        spec["arch"], spec.get("num_classes") or num_classes, images,
        int(spec["batch"]), int(spec["steps"]), "cpu",
    )  # fmt: skip
    print(
        json.dumps({"baseline_rss_bytes": baseline, "peak_rss_bytes": peak_rss_bytes(),
                    "pid": os.getpid()})
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
