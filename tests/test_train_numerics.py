"""The trainer's speed switches keep the study's numerics.

Every switch in ``SPEED_CANDIDATES`` trains squeezenet_dsc (the depthwise network the switches
are for) for 2 epochs on a digits subset from the same seed as the default, and each epoch's
training loss must stay within 1% of the default's, both computed here. Sharper one-step
checks pin each switch down: the same gradients in another layout, the same update rule.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from archbench.data import load_data
from archbench.errors import ArchbenchError
from archbench.train import RunLog, StopRequest, TrainConfig, Trainer
from archbench.train.config import CANDIDATE_PRECISION, SPEED_CANDIDATES, make_optimizer
from archbench.train.layout import (
    Fp32DepthwiseConv2d,
    contiguous_depthwise,
    fp32_depthwise,
    is_depthwise,
)
from architectures import create_arch

# 256 images at the study's batch of 128: 2 steps an epoch, 4 in all, seconds per run.
NUMERICS_RUN = dict(
    arch="squeezenet_dsc", dataset="digits", train_limit=256, batch_size=128, max_epochs=2, seed=0
)
# Why 1% is a fair bound and not a loose one: the switches change only the order of fp32
# additions (rounding at ~1e-7 relative), but Adam moves every weight by about lr whatever its
# gradient's size, so a rounding-level difference in a near-zero gradient flips a full step and
# the runs drift apart as they train. Over these 4 steps the drift measured 0.04% at most; a
# wrong update or a wrong layout changes the second epoch's loss by far more.
LOSS_TOLERANCE = 0.01


def epoch_losses(data_dir: Path, run_dir: Path, **switches) -> list[float]:
    config = TrainConfig(**NUMERICS_RUN, data_dir=str(data_dir), **switches).resolve_input_shape()
    data = load_data(config.data_config())
    config = config.resolved(data)
    config.validate()
    console = Console(quiet=True)
    trainer = Trainer(config, data, run_dir, RunLog(run_dir / "log", console, True), console)
    losses = []
    for epoch in range(config.max_epochs):
        trainer.epoch = epoch  # what fit() advances; fit() would also evaluate and checkpoint
        losses.append(trainer.train_one_epoch(StopRequest())["train_loss"])
    return losses


@pytest.fixture(scope="module")
def default_losses(data_dir, tmp_path_factory):
    """The default's per-epoch losses at a precision, trained once per precision."""
    trained: dict[str, list[float]] = {}

    def at(precision: str) -> list[float]:
        if precision not in trained:
            folder = tmp_path_factory.mktemp(f"default-{precision}")
            trained[precision] = epoch_losses(data_dir, folder, precision=precision)
        return trained[precision]

    return at


@pytest.mark.parametrize("candidate", sorted(SPEED_CANDIDATES))
@pytest.mark.slow
def test_candidate_keeps_the_training_loss(candidate, default_losses, data_dir, tmp_path):
    # A bf16 candidate against the bf16 default (bf16 runs on every host: emulated where the
    # CPU lacks it, only slower)
    precision = CANDIDATE_PRECISION.get(candidate, "fp32")
    losses = epoch_losses(data_dir, tmp_path, precision=precision, **SPEED_CANDIDATES[candidate])
    default_losses = default_losses(precision)
    assert len(losses) == len(default_losses) == 2
    for epoch, (mine, default) in enumerate(zip(losses, default_losses, strict=True), start=1):
        assert math.isfinite(mine)
        assert abs(mine - default) <= LOSS_TOLERANCE * abs(default), (
            f"{candidate}: epoch {epoch} training loss {mine:.5f} against the default's "
            f"{default:.5f}"
        )


def _loss_and_gradients(model, images, labels):
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_depthwise_contiguous_runs_nchw_with_the_same_gradients():
    torch.manual_seed(0)
    model = create_arch("squeezenet_dsc", num_classes=10, in_channels=3).train()
    model = model.to(memory_format=torch.channels_last)
    switched = copy.deepcopy(model)
    assert contiguous_depthwise(switched) == sum(is_depthwise(m) for m in model.modules()) > 0
    seen = []
    for module in switched.modules():  # registered after the switch's hooks: sees their input
        if is_depthwise(module):
            assert module.weight.is_contiguous() and module.weight.stride()[1] > 1  # NCHW
            module.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    images = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(8) % 10
    loss, gradients = _loss_and_gradients(model, images, labels)
    switched_loss, switched_gradients = _loss_and_gradients(switched, images, labels)
    assert seen and all(x.is_contiguous() and x.shape[1] > 1 for x in seen)
    # Same arithmetic in another layout: the kernels sum in another order, so each value can
    # differ by fp32 rounding accumulated over the network (about 1e-6 relative per layer);
    # 1e-4 relative (with an absolute floor for gradients near zero) holds that with margin.
    torch.testing.assert_close(switched_loss, loss, rtol=1e-5, atol=0)
    for name, gradient in gradients.items():
        floor = 1e-4 * gradient.abs().max().item()
        torch.testing.assert_close(switched_gradients[name], gradient, rtol=1e-4, atol=floor)


def test_depthwise_fp32_keeps_only_the_depthwise_layers_out_of_bf16_autocast():
    torch.manual_seed(0)
    model = create_arch("mobilenet", num_classes=10, in_channels=3).train()
    model = model.to(memory_format=torch.channels_last)
    switched = copy.deepcopy(model)
    depthwise = sum(is_depthwise(m) for m in model.modules())
    assert fp32_depthwise(switched) == depthwise > 0
    assert switched.state_dict().keys() == model.state_dict().keys()  # checkpoints unchanged
    dtypes: dict[bool, set] = {True: set(), False: set()}
    for module in switched.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(
                lambda m, _args, out: dtypes[isinstance(m, Fp32DepthwiseConv2d)].add(out.dtype)
            )
    images = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(8) % 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, gradients = _loss_and_gradients(switched, images, labels)
    assert dtypes == {True: {torch.float32}, False: {torch.bfloat16}}
    assert all(torch.isfinite(g).all() for g in gradients.values())
    # Outside autocast the switched model is the same function as the original.
    with torch.no_grad():
        torch.testing.assert_close(switched(images), model(images), rtol=1e-5, atol=1e-5)
    with pytest.raises(ArchbenchError, match="--depthwise-fp32 .* needs --precision bf16"):
        TrainConfig(depthwise_fp32=True).validate()


@pytest.mark.parametrize("impl", ["foreach", "fused"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizer_impl_is_the_same_update_rule(impl, optimizer):
    torch.manual_seed(0)
    start = [torch.randn(16, 8), torch.randn(8)]
    gradients = [[torch.randn_like(p) for p in start] for _ in range(3)]

    def trained(config: TrainConfig) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
        params = [torch.nn.Parameter(p.clone()) for p in start]
        optim = make_optimizer(config, params)
        for step in gradients:
            for param, grad in zip(params, step, strict=True):
                param.grad = grad.clone()
            optim.step()
        return [p.detach() for p in params], optim

    default, _ = trained(TrainConfig(optimizer=optimizer, weight_decay=1e-3))
    switched, optim = trained(
        TrainConfig(optimizer=optimizer, weight_decay=1e-3, optimizer_impl=impl)
    )
    assert optim.defaults[impl] is True  # the implementation asked for is the one running
    # Three steps of one elementwise rule: only the order of a few fp32 operations differs.
    for mine, reference, initial in zip(switched, default, start, strict=True):
        assert not torch.equal(mine, initial)  # the steps did move the weights
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6)


def test_bad_speed_switches_are_refused_up_front():
    with pytest.raises(ArchbenchError, match="--optimizer-impl 'vectorized' is not one of"):
        TrainConfig(optimizer_impl="vectorized").validate()
    with pytest.raises(ArchbenchError, match="--depthwise-contiguous"):
        TrainConfig(depthwise_contiguous=True, channels_last=False).validate()
