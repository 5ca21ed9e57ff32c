"""A run's transfer set-up: pretrained network, frozen parts, and (for a head) cached features.

The trainer asks one question, :func:`prepare_transfer`, and gets back the module to save, the
module to step, the parameters to optimize and, when the head trains from the feature cache, the
loaders of cached features that replace the image loaders. Everything else in the trainer stays
as it is, which is why "from the cache" and "through the frozen backbone" train the same head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from architectures import create_arch

from ...data import ImageData
from ...errors import ArchbenchError
from ..task import build_model
from .backbone import POOLINGS, FeatureExtractor, TransferHead, feature_dim
from .features import FeatureBatches, FeatureKey, cached_features, dataset_fingerprint
from .freeze import FINETUNE_MODES, apply_finetune
from .weights import load_weights, resolve_weights


@dataclass(frozen=True)
class TransferConfig:
    """The transfer settings of a run (``--weights``, ``--finetune``, ``--pooling``, ...)."""

    weights: str | None = None
    finetune: str | None = None  # None: "all" when weights are given (seed 000's choice)
    pooling: str = "avg"
    augment_copies: int = 0

    @property
    def mode(self) -> str | None:
        if self.finetune is None and self.weights is None:
            return None
        return self.finetune or "all"

    def checkpoint_record(self) -> dict | None:
        """What ``best.pt`` needs to rebuild the network it holds (None: the plain network)."""
        if self.mode is None:
            return None
        return {"finetune": self.mode, "pooling": self.pooling}

    def validate(self, augment: str | None) -> None:
        """Refuse contradictory settings before anything is loaded or written."""
        if self.finetune is not None and self.finetune not in FINETUNE_MODES:
            raise ArchbenchError(
                f"--finetune {self.finetune!r} is not one of {', '.join(FINETUNE_MODES)}"
            )
        if self.finetune is not None and self.weights is None:
            raise ArchbenchError("--finetune needs --weights (there is nothing to fine-tune)")
        if self.pooling not in POOLINGS:
            raise ArchbenchError(f"--pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.augment_copies < 0:
            raise ArchbenchError(f"--augment-copies must be >= 0, got {self.augment_copies}")
        if self.augment_copies and self.mode != "head":
            raise ArchbenchError(
                "--augment-copies pre-extracts features for a head: it needs --finetune head"
            )
        if self.augment_copies and augment == "none":
            raise ArchbenchError(
                "--augment-copies with --augment none would store identical copies"
            )


@dataclass
class Transfer:
    """What the trainer uses instead of a freshly built network."""

    model: nn.Module  # saved in checkpoints, profiled afterwards
    step_model: nn.Module  # called on each batch (the head alone when training from the cache)
    trainable: list[nn.Parameter]
    train_loader: FeatureBatches | None = None  # None: the trainer's image loaders
    eval_loaders: dict[str, FeatureBatches] = field(default_factory=dict)
    record: dict = field(default_factory=dict)  # what config.json says about the transfer


def model_for_checkpoint(
    checkpoint: dict, in_channels: int | None = None, task: str | None = None
) -> nn.Module:
    """The network a ``best.pt`` holds, unweighted: a head on a backbone, or the plain network.

    ``in_channels`` is the run's input channels (``input_shape[0]`` in its config); None is the
    network's registered default. ``task`` (default: the checkpoint's own, else classification)
    decides the plain network's end: a multi-label one has no final ReLU (see ``build_model``).
    """
    task = task or checkpoint.get("task") or "classification"
    network = build_model(checkpoint["arch"], checkpoint["num_classes"], task, in_channels)
    transfer = checkpoint.get("transfer") or {}
    if transfer.get("finetune") != "head":
        return network
    extractor = FeatureExtractor(network, transfer.get("pooling", "avg"))
    dim = checkpoint["model"]["classifier.weight"].shape[1]
    return TransferHead(extractor, dim, checkpoint["num_classes"])


def trained_model(
    checkpoint: dict, path: Path, in_channels: int | None = None, task: str | None = None
) -> nn.Module:
    """:func:`model_for_checkpoint` with the checkpoint's weights loaded; ``path`` names it in
    the one-line error a checkpoint that does not fit its network gets."""
    model = model_for_checkpoint(checkpoint, in_channels, task)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ArchbenchError(
            f"{path} does not fit {checkpoint['arch']} with {checkpoint['num_classes']} classes: "
            f"{str(error).splitlines()[0]}"
        ) from None
    return model


def prepare_transfer(
    arch: str,
    data: ImageData,
    config: TransferConfig,
    *,
    augment: str,
    seed: int,
    batch_size: int,
    device: torch.device,
    data_dir: Path,
    input_size: int | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    log: Callable[[str], None] = print,
) -> Transfer:
    """Load the weights, freeze what ``--finetune`` keeps, and fill the feature cache if used."""
    weights = resolve_weights(config.weights, arch)
    network = create_arch(arch, num_classes=data.num_classes, in_channels=data.shape[0])
    loaded = load_weights(network, weights)
    record = {
        "weights": weights.describe() | loaded.describe(),
        "finetune": config.mode,
        "pooling": config.pooling if config.mode == "head" else None,
    }
    if loaded.skipped:
        log(f"weights {weights.source}: skipped (shape differs) {', '.join(loaded.skipped)}")
    if config.mode != "head":
        report = apply_finetune(network, config.mode)
        model = network.to(device, memory_format=memory_format)
        record["trainable"] = asdict(report) | {"trainable": list(report.trainable)}
        trainable = [p for p in model.parameters() if p.requires_grad]
        return Transfer(model, model, trainable, record=record)

    extractor = FeatureExtractor(network, config.pooling, input_size)
    image_size = input_size or int(data.shape[-1])  # data.shape: what run --input-size gives
    dim = feature_dim(extractor, data.shape)  # the extractor resizes to input_size itself
    model = TransferHead(extractor, dim, data.num_classes).to(device, memory_format=memory_format)
    trainable = list(model.classifier.parameters())
    record |= {"feature_dim": dim, "feature_source": extractor.source,
               "trainable": {"trainable": ["classifier"], "trainable_params":
                             sum(p.numel() for p in trainable)}}  # fmt: skip
    if augment != "none" and not config.augment_copies:
        record["feature_cache"] = {"status": "bypassed", "why": f"random augmentation {augment}"}
        log(f"feature cache bypassed: --augment {augment} changes every image's features")
        return Transfer(model, model, trainable, record=record)

    splits = {"train": data.train, "val": data.val, "test": data.test}
    common = dict(backbone=arch, weights_sha256=extractor.state_sha256(),
                  pooling=config.pooling, input_size=image_size, dataset=data.name)  # fmt: skip
    loaders, cache = {}, {}
    for name, split in splits.items():
        if split is None:
            continue
        copies = config.augment_copies if name == "train" else 0
        key = FeatureKey(
            **common, dataset_fingerprint=dataset_fingerprint(split, data.mean, data.std),
            split=f"{name}-aug{copies}" if copies else name,
            augment=augment if copies else "none", copies=copies or 1, seed=seed,
        )  # fmt: skip
        entry = cached_features(
            extractor, split, key, data_dir=data_dir, mean=data.mean, std=data.std,
            device=device, channels_last=memory_format == torch.channels_last,
        )  # fmt: skip
        cache[name] = {"hit": entry.hit, "path": str(entry.path),
                       "shape": list(entry.features.shape),
                       "extraction_seconds": entry.manifest["extraction_seconds"]}  # fmt: skip
        features, labels = entry.tensors()
        loaders[name] = FeatureBatches(
            features, labels, batch_size=batch_size if name == "train" else max(batch_size, 512),
            shuffle=name == "train", seed=seed, device=device,
        )  # fmt: skip
    hit = all(entry["hit"] for entry in cache.values())
    record["feature_cache"] = {"status": "hit" if hit else "miss", "splits": cache}
    log(
        f"feature cache {'hit' if hit else 'miss'}: "
        + ", ".join(
            f"{name} {'hit' if e['hit'] else 'miss'} {e['shape']}" for name, e in cache.items()
        )
    )
    return Transfer(
        model,
        model.classifier,
        trainable,
        train_loader=loaders.pop("train"),
        eval_loaders=loaders,
        record=record,
    )
