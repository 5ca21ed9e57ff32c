"""Transfer learning: pretrained weights, partial fine-tuning, and a cache of backbone features.

Seeds 000, 003 and 004 start from pretrained backbones instead of training from scratch; this
package holds what they share: ``--weights`` resolution (:mod:`.weights`), ``--finetune``
(:mod:`.freeze`), the backbone as a feature extractor (:mod:`.backbone`) and the feature cache
(:mod:`.features`).
"""

from .backbone import POOLINGS, FeatureExtractor, TransferHead, feature_dim, global_pool
from .features import CachedFeatures, FeatureBatches, FeatureKey, cached_features, extract
from .freeze import FINETUNE_MODES, FinetuneReport, apply_finetune, freeze
from .weights import LoadReport, Weights, load_weights, resolve_weights

__all__ = [
    "FINETUNE_MODES",
    "POOLINGS",
    "CachedFeatures",
    "FeatureBatches",
    "FeatureExtractor",
    "FeatureKey",
    "FinetuneReport",
    "LoadReport",
    "TransferHead",
    "Weights",
    "apply_finetune",
    "cached_features",
    "extract",
    "feature_dim",
    "freeze",
    "global_pool",
    "load_weights",
    "resolve_weights",
]
