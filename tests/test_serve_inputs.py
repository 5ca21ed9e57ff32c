"""Every kind of run archbench trains is served with the profiler's own input tensor.

Per kind (digits, MNIST-format, an image folder, ``--input-size 64``, a timm network, a
multi-label run): a one-epoch run, its test images as a user would upload them (the dataset's
images at their native shape as PNG; the image folder's own JPEG files), and two checks: the
served preprocessing gives exactly ``archbench profile``'s tensor (``load_run(...).images``),
and a real server on 127.0.0.1 answers each image as the profiler's PyTorch model predicts it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from archbench.cli import main  # noqa: E402
from archbench.data import DataConfig, load_data  # noqa: E402
from archbench.data.upload import encode_png  # noqa: E402
from archbench.profile.loaded import load_run  # noqa: E402
from archbench.serve.model import load_run_model  # noqa: E402
from tests.serving import served, train_tiny, write_fashion_like  # noqa: E402

IMAGES = 8  # test images per kind
# ONNX Runtime and PyTorch sum the same float32 products in different orders; the profiler's
# parity check accepts logits within 1e-4, so probabilities (|d softmax| <= |d logit|) within
# 1e-4 are the same prediction. A wrongly prepared input moves them by far more.
PROBABILITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    return write_fashion_like(tmp_path_factory.mktemp("fashion"))


def _native_pngs(dataset: str, data_dir: Path) -> list[bytes]:
    """The first test images as the dataset holds them (before any fitting), as PNG files."""
    config = DataConfig(dataset=dataset, data_dir=data_dir, download=False, input_shape=None)
    images = load_data(config).test.images[:IMAGES]
    return [encode_png(image) for image in images]


def _folder_files(root: Path) -> list[bytes]:
    """The first test files in ImageFolder order (sorted class, then sorted file): indices 0.."""
    first_class = sorted(p for p in (root / "test").iterdir() if p.is_dir())[0]
    return [path.read_bytes() for path in sorted(first_class.iterdir())[:IMAGES]]


def _profiler_probabilities(loaded, task: str) -> torch.Tensor:
    with torch.inference_mode():
        logits = loaded.model.eval()(loaded.images[:IMAGES]).double()
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


def _check_kind(run_dir: Path, uploads: list[bytes]) -> dict:
    loaded = load_run(run_dir)  # what archbench profile reads
    model = load_run_model(run_dir, warmup_batch=2)
    for index, data in enumerate(uploads):
        served_tensor = model.preprocess(data)
        assert served_tensor.dtype == np.float32
        assert np.array_equal(served_tensor, loaded.images[index].numpy()), index
    expected = _profiler_probabilities(loaded, loaded.task)
    with served(model) as url, httpx.Client(timeout=60) as client:
        answers = [client.post(f"{url}/predict", content=data).json() for data in uploads]
        metadata = client.get(f"{url}/metadata").json()
    assert metadata["input_size"] == list(loaded.images.shape[1:])
    for answer, reference in zip(answers, expected, strict=True):
        probabilities = torch.tensor(list(answer["probabilities"].values()), dtype=torch.float64)
        assert list(answer["probabilities"]) == loaded.class_names
        assert torch.allclose(probabilities, reference, atol=PROBABILITY_TOLERANCE, rtol=0)
        if loaded.task == "multilabel":
            assert answer["threshold"] == loaded.threshold
            # A label within the tolerance of the threshold may fall either side of it.
            clear = (reference - loaded.threshold).abs() > PROBABILITY_TOLERANCE
            above = reference >= loaded.threshold
            names = loaded.class_names
            expected_labels = {n for n, c, a in zip(names, clear, above, strict=True) if c and a}
            unsure = {n for n, c in zip(names, clear, strict=True) if not c}
            assert set(answer["labels"]) - unsure == expected_labels
        else:
            top = int(reference.argmax())
            if answer["label"] != loaded.class_names[top]:  # only a float tie may differ
                second = loaded.class_names.index(answer["label"])
                assert float(reference[top] - reference[second]) <= PROBABILITY_TOLERANCE
    return {"loaded": loaded, "model": model, "answers": answers}


def test_a_digits_run_of_one_channel(tmp_path):
    run_dir = train_tiny(tmp_path / "runs", tmp_path / "data")
    checked = _check_kind(run_dir, _native_pngs("digits", tmp_path / "data"))
    assert checked["model"].input_size == (1, 32, 32)  # the tiny net takes digits as they are


def test_an_mnist_format_run_is_zero_padded_as_trained(tmp_path, fashion_dir):
    """28x28 -> 32x32 by a 2-pixel zero pad (as training does), not by a resize."""
    # 32 px, as the study's networks take MNIST (the tiny net would get the native 28x28).
    run_dir = train_tiny(
        tmp_path / "runs", fashion_dir, "--input-size", "32", dataset="fashion-mnist"
    )
    checked = _check_kind(run_dir, _native_pngs("fashion-mnist", fashion_dir))
    model = checked["model"]
    assert model.inputs.native_shape == (1, 28, 28) and model.input_size == (1, 32, 32)
    tensor = model.preprocess(_native_pngs("fashion-mnist", fashion_dir)[0])
    background = -model.inputs.mean[0] / model.inputs.std[0]  # a zero pixel, normalized
    border = np.concatenate([tensor[:, :2].ravel(), tensor[:, -2:].ravel()])
    assert np.allclose(border, background, atol=1e-6)


def test_an_image_folder_run_of_jpeg_files(tmp_path, cifar10_mini):
    run_dir = train_tiny(
        tmp_path / "runs", tmp_path / "data", "--train-limit", "300",
        dataset=f"imagefolder:{cifar10_mini}",
    )  # fmt: skip
    _check_kind(run_dir, _folder_files(cifar10_mini))


def test_an_input_size_64_run(tmp_path):
    run_dir = train_tiny(tmp_path / "runs", tmp_path / "data", "--input-size", "64")
    checked = _check_kind(run_dir, _native_pngs("digits", tmp_path / "data"))
    assert checked["model"].input_size == (1, 64, 64)


def test_a_timm_network_run(tmp_path):
    run_dir = train_tiny(
        tmp_path / "runs", tmp_path / "data",
        "--arch", "timm:test_efficientnet", "--train-limit", "200",
    )  # fmt: skip
    checked = _check_kind(run_dir, _native_pngs("digits", tmp_path / "data"))
    assert checked["model"].arch == "timm:test_efficientnet"


def test_a_multilabel_run_answers_labels_at_its_threshold(tmp_path):
    run_dir = train_tiny(
        tmp_path / "runs", tmp_path / "data", "--task", "multilabel", "--threshold", "0.3",
        dataset="digits-mosaic",
    )  # fmt: skip
    checked = _check_kind(run_dir, _native_pngs("digits-mosaic", tmp_path / "data"))
    for answer in checked["answers"]:
        assert set(answer) == {"labels", "probabilities", "threshold", "model"}
        assert isinstance(answer["labels"], list) and answer["threshold"] == 0.3
    # "unknown below P" means nothing for a multi-label answer: refused before loading.
    assert main(["serve", str(run_dir), "--port", "0", "--reject-below", "0.5"]) == 2
