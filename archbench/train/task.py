"""What the trainer optimizes and watches, per task: single-label classification or multi-label.

Multi-label is a different task, not a flag on the classifier: the targets are multi-hot rows,
the loss is a (weighted) binary cross-entropy per label, predictions are thresholded
probabilities, and the figure that selects ``best.pt`` is validation mAP (threshold-free, so a
run is not selected for a lucky threshold). The trainer asks its task for the loss, the running
training figure, and the evaluation figures of a split; everything else is shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from architectures import create_arch

from .loss import pos_weights, weighted_bce

TASKS = ("classification", "multilabel")
DEFAULT_THRESHOLD = 0.5


def build_model(
    arch: str, num_outputs: int, task: str, in_channels: int | None = None
) -> nn.Module:
    """The network for ``task``; multi-label ones get class scores a sigmoid can map below 0.5.

    SqueezeNet ends in a ReLU on its class scores: harmless before a softmax, fatal before a
    sigmoid (every probability would be at least 0.5, and once the ReLU dies every logit is 0 and
    the loss sits at ln 2). For multi-label, a ReLU after the last convolution or linear layer is
    replaced by the identity; no parameter changes, so the parameter count is the study's.
    ``in_channels`` None is the network's registered input channels.
    """
    model = create_arch(arch, num_classes=num_outputs, in_channels=in_channels)
    if task == "multilabel":
        drop_final_activation(model)
    return model


def drop_final_activation(model: nn.Module) -> list[str]:
    """Replace every ReLU registered after the last conv/linear layer; return their names."""
    named = list(model.named_modules())
    last_layer = max(
        (i for i, (_, module) in enumerate(named) if isinstance(module, (nn.Conv2d, nn.Linear))),
        default=-1,
    )
    replaced = []
    for name, module in named[last_layer + 1 :]:
        if isinstance(module, nn.ReLU):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, nn.Identity())
            replaced.append(name)
    return replaced


@dataclass
class ClassificationTask:
    """Cross-entropy over classes; accuracy is the running and the selection figure.

    ``class_weights`` (``--class-weight``) weigh the training loss only: the evaluation loss
    and accuracy stay unweighted, so they remain comparable between runs.
    """

    num_classes: int
    class_weights: torch.Tensor | None = None  # (num_classes,), on the training device
    name: str = "classification"
    train_figure: str = "acc"  # train_acc: the fraction of correct top-1 predictions
    selection_figure: str = "acc"
    columns: tuple[str, ...] = ("acc",)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=self.class_weights)

    def train_count(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(correct predictions, predictions) in a batch."""
        return (logits.argmax(1) == targets).sum(), targets.shape[0]

    @torch.inference_mode()
    def evaluate(self, model, loader) -> dict:
        """Loss, top-1 and top-5 accuracy of ``model`` on a loader's batches (summed on the
        device, in float64 as a Python float would be, and read back once)."""
        loss_sum = top1 = top5 = None
        seen = 0
        k = min(5, self.num_classes)
        for images, labels in loader:
            logits = model(images)
            if loss_sum is None:
                loss_sum = torch.zeros((), device=logits.device, dtype=torch.float64)
                top1 = torch.zeros((), device=logits.device, dtype=torch.long)
                top5 = torch.zeros((), device=logits.device, dtype=torch.long)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
            hits = logits.topk(k, dim=1).indices == labels[:, None]
            top1 += hits[:, 0].sum()
            top5 += hits.any(dim=1).sum()
            seen += labels.shape[0]
        if loss_sum is None:
            raise ValueError("cannot evaluate on an empty split")
        return {
            "loss": loss_sum.item() / seen,
            "acc": top1.item() / seen,
            "top1": top1.item() / seen,
            "top5": top5.item() / seen if self.num_classes >= 5 else None,
            "n": seen,
        }


@dataclass
class MultiLabelTask:
    """Positive-weighted BCE per label; Hamming error while training, mAP to select."""

    pos_weight: torch.Tensor  # (K,), see archbench.losses
    threshold: float = DEFAULT_THRESHOLD
    name: str = "multilabel"
    train_figure: str = "hamming"  # train_hamming: wrong label decisions / all decisions
    selection_figure: str = "map"
    columns: tuple[str, ...] = ("map", "hamming", "micro_f1")

    @classmethod
    def from_training_targets(
        cls, spec: str, targets: torch.Tensor, threshold: float
    ) -> MultiLabelTask:
        return cls(pos_weight=pos_weights(spec, targets), threshold=threshold)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return weighted_bce(logits, targets, self.pos_weight)

    def train_count(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(wrong label decisions, label decisions) in a batch, at the threshold."""
        predicted = torch.sigmoid(logits.float()) >= self.threshold
        return (predicted != targets.bool()).sum(), targets.numel()

    @torch.inference_mode()
    def evaluate(self, model, loader) -> dict:
        """Weighted BCE, mAP, Hamming error and micro F1 of ``model`` on a loader's batches."""
        from sklearn.metrics import f1_score, hamming_loss  # ~1 s to import: only on use

        logits, targets = [], []
        for images, batch_targets in loader:
            logits.append(model(images).float().cpu())
            targets.append(batch_targets.cpu())
        all_logits, all_targets = torch.cat(logits), torch.cat(targets)
        loss = weighted_bce(all_logits, all_targets, self.pos_weight.cpu()).item()
        truth = all_targets.numpy().astype(bool)
        scores = torch.sigmoid(all_logits).numpy()
        predicted = scores >= self.threshold
        return {
            "loss": loss,
            "map": _mean_ap(truth, scores),
            "hamming": float(hamming_loss(truth, predicted)),
            "all_negative_hamming": float(truth.mean()),
            "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "n": int(truth.shape[0]),
        }


def _mean_ap(truth, scores) -> float:
    """Mean average precision over the labels with a positive example (AP is undefined else)."""
    from sklearn.metrics import average_precision_score  # ~1 s to import: only on use

    defined = truth.any(axis=0)
    if not defined.any():
        return float("nan")
    return float(average_precision_score(truth[:, defined], scores[:, defined], average="macro"))


def make_task(
    task: str,
    train_targets: torch.Tensor,
    num_classes: int,
    *,
    pos_weight: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    class_weights: list[float] | None = None,
    device: torch.device | str = "cpu",
) -> ClassificationTask | MultiLabelTask:
    """The task object the trainer uses; multi-label weights come from the training targets,
    class weights (single-label only) from ``--class-weight``."""
    if task == "multilabel":
        made = MultiLabelTask.from_training_targets(pos_weight or "1", train_targets, threshold)
        made.pos_weight = made.pos_weight.to(device)
        return made
    weights = None if class_weights is None else torch.tensor(class_weights, device=device)
    return ClassificationTask(num_classes=num_classes, class_weights=weights)
