"""Features for use outside training: a run directory's backbone, or a network with weights.

``archbench features`` and ``archbench retrieval`` both start here: they name a backbone either
as a run directory (its ``best.pt``, the run's dataset and split) or as ``--arch`` with
``--weights`` and ``--dataset``, and get the cached features of each split.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from architectures import arch_info, create_arch

from ...data import DataConfig, ImageData, dataset_shape, default_data_dir, load_data
from ...errors import ArchbenchError
from .. import rundir
from ..config import TrainConfig
from .backbone import FeatureExtractor, TransferHead
from .features import CachedFeatures, FeatureKey, cached_features, dataset_fingerprint
from .weights import file_sha256, load_weights, resolve_weights


@dataclass(frozen=True)
class FeatureSource:
    """Which backbone, weights and data the features come from."""

    run_dir: Path | None = None
    arch: str | None = None
    weights: str | None = None  # None with --arch: the network's fresh initialization
    dataset: str = "digits"
    data_dir: Path | None = None
    pooling: str | None = None  # None: the run's own (a head run), else avg
    val_fraction: float = 0.1
    seed: int = 0  # a fresh network's initialization (without --weights)
    split_seed: int = 0  # the validation split


@dataclass
class SourceFeatures:
    """The features of every split, and what they were computed from."""

    backbone: str
    data: ImageData
    splits: dict[str, CachedFeatures] = field(default_factory=dict)
    weights: dict = field(default_factory=dict)

    def record(self) -> dict:
        """The ``features`` entry of a JSON report: backbone, weights, per-split cache facts."""
        any_entry = next(iter(self.splits.values()))
        key = any_entry.manifest["key"]
        return {
            "backbone": self.backbone,
            "weights": self.weights,
            "pooling": key["pooling"],
            "input_size": key["input_size"],
            "dataset": self.data.name,
            "feature_dim": any_entry.manifest["feature_dim"],
            "splits": {
                name: {
                    "hit": entry.hit,
                    "path": str(entry.path),
                    "shape": list(entry.features.shape),
                    "bytes": entry.manifest["bytes"],
                    "extraction_seconds": entry.manifest["extraction_seconds"],
                    "images_per_second": entry.manifest["images_per_second"],
                }
                for name, entry in self.splits.items()
            },
        }


def source_features(
    source: FeatureSource, splits=("train", "val", "test"), *, single_label_for: str | None = None
) -> SourceFeatures:
    """Extract (or reuse) the features of ``splits`` for ``source``.

    ``single_label_for`` names a use that needs one class per image (retrieval): a multi-label
    dataset is then refused before anything is extracted.
    """
    extractor, backbone, weights, config = _extractor(source)
    data = load_data(config)
    if single_label_for and data.multilabel:
        raise ArchbenchError(
            f"{single_label_for} judges one class per image; {data.name} is a multi-label "
            "dataset (archbench features still extracts its features)"
        )
    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    result = SourceFeatures(backbone=backbone, data=data, weights=weights)
    weights_hash = extractor.state_sha256()
    for name in splits:
        split = getattr(data, name)
        if split is None:
            continue
        key = FeatureKey(
            backbone=backbone, weights_sha256=weights_hash, pooling=extractor.pooling,
            input_size=extractor.input_size or int(split.images.shape[-1]), dataset=data.name,
            dataset_fingerprint=dataset_fingerprint(split, data.mean, data.std), split=name,
        )  # fmt: skip
        result.splits[name] = cached_features(
            extractor, split, key, data_dir=data_dir, mean=data.mean, std=data.std
        )
    return result


def _extractor(source: FeatureSource) -> tuple[FeatureExtractor, str, dict, DataConfig]:
    if (source.run_dir is None) == (source.arch is None):
        raise ArchbenchError("give a RUN_DIR, or --arch with --weights and --dataset")
    if source.run_dir is not None:
        return _from_run(source)
    torch.manual_seed(source.seed)  # without --weights: a seeded fresh initialization
    # Fed as archbench run feeds it: its own shape, or the dataset's for a foreign network.
    shape = arch_info(source.arch).input_shape(dataset_shape(source.dataset))
    # The classifier is dropped anyway, so its class count does not matter.
    network = create_arch(source.arch, num_classes=10, in_channels=shape[0])
    weights = {"source": None, "sha256": None}
    if source.weights is not None:
        resolved = resolve_weights(source.weights, source.arch)
        weights = resolved.describe() | load_weights(network, resolved).describe()
    config = DataConfig(
        dataset=source.dataset, data_dir=source.data_dir, val_fraction=source.val_fraction,
        split_seed=source.split_seed, input_shape=shape,
    )  # fmt: skip
    return FeatureExtractor(network, source.pooling or "avg"), source.arch, weights, config


def _from_run(source: FeatureSource) -> tuple[FeatureExtractor, str, dict, DataConfig]:
    from ..restore import restore_run  # restore builds on this package: imported when used

    restored = restore_run(source.run_dir, complete=True)
    info, model, shape = restored.info, restored.model, restored.inputs.input_shape
    train = info.config["train"]
    best_path = info.path / rundir.BEST
    if isinstance(model, TransferHead):
        extractor = model.backbone
        if source.pooling is not None and source.pooling != extractor.pooling:
            raise ArchbenchError(
                f"{info.path} trained its head on {extractor.pooling}-pooled features; "
                f"--pooling {source.pooling} would describe another backbone"
            )
    else:
        extractor = FeatureExtractor(model, source.pooling or "avg")
    # The run's own data (its CSV layout and training limit too), as profile reads it.
    config = replace(TrainConfig.from_dict(train), input_shape=shape).data_config(download=False)
    weights = {"source": str(info.path), "kind": "run", "sha256": file_sha256(best_path)}
    return extractor, train["arch"], weights, config
