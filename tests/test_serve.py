"""``archbench serve`` and ``serve-bench``: real servers on 127.0.0.1, real HTTP requests.

One digits run is trained for one epoch per module; the servers are ``archbench serve``
subprocesses on a port the OS picks (``--port 0``; the log line names it).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from archbench.cli import main  # noqa: E402
from archbench.data import DataConfig, load_data, normalize  # noqa: E402
from archbench.data.imagefolder import decode_images  # noqa: E402
from archbench.serve.bench import _encode_png, serve_bench_table  # noqa: E402
from archbench.train.rundir import BEST, load_checkpoint  # noqa: E402
from architectures import create_arch  # noqa: E402
from tests.conftest import copy_run  # noqa: E402
from tests.serving import ServerProcess as Server  # noqa: E402

TIE = 1e-4  # as the ONNX parity check: a disagreement within this logit margin is a tie


@pytest.fixture(scope="module")
def trained(digits_run, tmp_path_factory) -> dict:
    """The session's one-epoch squeezenet_dsc digits run (a private copy without its ONNX
    file, so the first serve exports it), its test images and its offline predictions."""
    tmp = tmp_path_factory.mktemp("serve")
    data_dir = digits_run.data_dir
    run_dir = copy_run(digits_run, tmp / "runs")
    for onnx_file in run_dir.glob("*.onnx"):
        onnx_file.unlink()
    best = load_checkpoint(run_dir / BEST)
    model = create_arch(best["arch"], num_classes=best["num_classes"])
    model.load_state_dict(best["model"])
    model.eval()
    test = load_data(DataConfig(dataset="digits", data_dir=data_dir, download=False)).test
    with torch.inference_mode():
        logits = model(normalize(test.images, best["mean"], best["std"]))
    return {
        "run_dir": run_dir,
        "data_dir": data_dir,
        "tmp": tmp,
        "images": test.images,
        "best": best,
        "model": model,
        "logits": logits,
        "classes": best["classes"],
    }


@pytest.fixture(scope="module")
def server(trained):
    """Batching on: up to 8 requests share a forward pass."""
    running = Server(
        trained["run_dir"], trained["tmp"] / "serve.log", "--max-batch", "8", "--max-wait-ms", "5"
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def strict_server(trained):
    """Batching off, and an unsure top class answers ``unknown``."""
    running = Server(
        trained["run_dir"],
        trained["tmp"] / "strict.log",
        "--max-batch", "1", "--reject-below", "0.99",
    )  # fmt: skip
    yield running
    running.stop()


def _png(trained, index: int) -> bytes:
    return _encode_png(trained["images"][index])


async def _post_all(url: str, bodies: list[bytes], concurrency: int = 8) -> list[httpx.Response]:
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(body: bytes) -> httpx.Response:
            async with semaphore:
                return await client.post(
                    f"{url}/predict", content=body, headers={"content-type": "image/png"}
                )

        return await asyncio.gather(*(one(body) for body in bodies))


def _assert_matches_offline(answers: list[dict], logits: torch.Tensor, classes: list[str]):
    for answer, row in zip(answers, logits, strict=True):
        assert set(answer) == {"label", "probabilities", "model", "unknown"}
        probabilities = answer["probabilities"]
        assert list(probabilities) == classes
        assert all(isinstance(p, float) for p in probabilities.values())
        assert abs(sum(probabilities.values()) - 1) <= 1e-6
        offline = int(row.argmax())
        served = classes.index(answer["label"])
        if served != offline:  # only a tie the float tolerance cannot separate may differ
            assert float(row[offline] - row[served]) <= TIE, (answer, row)


@pytest.mark.slow
def test_every_test_image_gets_the_offline_prediction(trained, server):
    bodies = [_png(trained, i) for i in range(len(trained["images"]))]
    responses = asyncio.run(_post_all(server.url, bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies)
    answers = [r.json() for r in responses]
    _assert_matches_offline(answers, trained["logits"], trained["classes"])
    assert {a["model"] for a in answers} == {trained["run_dir"].name}
    assert not any(a["unknown"] for a in answers)
    lines = [line for line in server.log().splitlines() if "POST /predict 200" in line]
    assert len(lines) >= len(bodies)  # one log line per request


def test_jpeg_files_get_the_image_folder_prediction(trained, server, tmp_path):
    """JPEG bytes are decoded as archbench decodes an image folder's files."""
    from PIL import Image

    paths = []
    for i in range(12):
        path = tmp_path / f"{i}.jpg"
        Image.open(io.BytesIO(_png(trained, i))).save(path, quality=80)
        paths.append(str(path))
    inputs = normalize(decode_images(paths), trained["best"]["mean"], trained["best"]["std"])
    with torch.inference_mode():
        logits = trained["model"](inputs)
    responses = asyncio.run(_post_all(server.url, [Path(p).read_bytes() for p in paths]))
    _assert_matches_offline([r.json() for r in responses], logits, trained["classes"])


def test_multipart_raw_and_base64_agree(trained, server):
    body = _png(trained, 3)
    url = f"{server.url}/predict"
    multipart = httpx.post(url, files={"image": ("x.png", body, "image/png")}, timeout=30)
    raw = httpx.post(url, content=body, timeout=30)
    as_json = httpx.post(url, json={"image": base64.b64encode(body).decode()}, timeout=30)
    assert multipart.status_code == raw.status_code == as_json.status_code == 200
    assert multipart.json() == raw.json() == as_json.json()


def test_health_and_metadata(trained, server):
    assert httpx.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ready"}
    metadata = httpx.get(f"{server.url}/metadata", timeout=10).json()
    assert metadata["network"] == "squeezenet_dsc"
    assert metadata["classes"] == trained["classes"]
    assert metadata["input_size"] == [3, 32, 32]
    assert metadata["backend"] == "onnxruntime"
    assert Path(metadata["run_dir"]) == trained["run_dir"]
    assert metadata["max_batch"] == 8
    startup = metadata["startup"]
    for key in ("model_load_s", "session_s", "warmup_s", "ready_s", "first_ready_healthz_s"):
        assert startup[key] >= 0
    assert (trained["run_dir"] / "model.onnx").is_file()  # exported from best.pt on first serve


@pytest.mark.parametrize(
    ("name", "request_kwargs", "status"),
    [
        ("text", {"content": b"hello, not an image"}, 415),
        ("empty", {"content": b""}, 415),
        ("truncated jpeg", {"content": "truncated"}, 415),
        ("20 MB upload", {"content": b"\xff" * (20 * 1024 * 1024)}, 413),
        ("20 MB multipart", {"files": {"image": ("big.jpg", b"\0" * (20 * 1024 * 1024))}}, 413),
        ("broken base64", {"json": {"image": "not base64 at all!"}}, 422),
        (
            "malformed json",
            {"content": b'{"image": ', "headers": {"content-type": "application/json"}},
            422,
        ),  # noqa: E501
        ("json without image", {"json": {"picture": "abc"}}, 422),
        ("multipart without file", {"data": {"image": "abc"}, "files": {"x": (None, "y")}}, 422),
    ],
)
def test_bad_bodies_get_their_4xx_and_the_server_carries_on(
    trained, server, name, request_kwargs, status
):
    from PIL import Image

    if request_kwargs.get("content") == "truncated":
        buffer = io.BytesIO()
        Image.open(io.BytesIO(_png(trained, 0))).convert("RGB").resize((64, 64)).save(
            buffer, format="JPEG"
        )
        request_kwargs = {"content": buffer.getvalue()[:200]}
    response = httpx.post(f"{server.url}/predict", timeout=60, **request_kwargs)
    assert response.status_code == status, (name, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    good = httpx.post(f"{server.url}/predict", content=_png(trained, 1), timeout=30)
    assert good.status_code == 200


@pytest.mark.slow
def test_reject_below_marks_unsure_answers_unknown(trained, strict_server, server):
    bodies = [_png(trained, i) for i in range(40)]
    strict = [r.json() for r in asyncio.run(_post_all(strict_server.url, bodies, 4))]
    plain = [r.json() for r in asyncio.run(_post_all(server.url, bodies, 4))]
    unknown = 0
    for answer, reference in zip(strict, plain, strict=True):
        top = max(answer["probabilities"].values())
        assert answer["unknown"] is (top < 0.99)
        if answer["unknown"]:
            unknown += 1
            assert answer["label"] == "unknown"
        else:  # without batching the answer is the batched server's
            assert answer["label"] == reference["label"]
    assert unknown > 0  # one epoch of training leaves plenty of unsure digits


def test_serve_bench_answers_every_request(trained, server, capsys):
    out = trained["tmp"] / "bench"
    code = main(
        ["serve-bench", server.url, "--dataset", "digits", "--data-dir", str(trained["data_dir"]),
         "--requests", "30", "--concurrency", "1,4", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert "p50" in capsys.readouterr().out
    saved = json.loads((out / "serve-bench.json").read_text())
    (run,) = saved["runs"]
    assert [level["concurrency"] for level in run["levels"]] == [1, 4]
    for level in run["levels"]:
        assert level["sent"] == level["answered"] == 30
        assert level["errors"] == 0
        assert level["p50_ms"] <= level["p99_ms"]
    assert run["server"]["max_batch"] == 8
    table = serve_bench_table(saved)
    assert table.count("| squeezenet_dsc |") == 2 and "30/30" in table


def test_serve_bench_refuses_a_remote_address(capsys):
    code = main(["serve-bench", "http://192.0.2.1:8000", "--dataset", "digits"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "not a loopback address" in err and "\n" not in err


def test_serve_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--port", "0"]) == 2
    assert "not an archbench run directory" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--max-body", "lots"]) == 2
    assert main(["serve", str(tmp_path), "--max-batch", "0"]) == 2


@pytest.mark.slow
def test_sigterm_answers_requests_in_flight(trained):
    """Requests waiting in a (deliberately slow) batch are answered before the server exits."""
    slow = Server(
        trained["run_dir"],
        trained["tmp"] / "slow.log",
        "--max-batch",
        "64",
        "--max-wait-ms",
        "5000",
    )
    bodies = [_png(trained, i) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(httpx.post, f"{slow.url}/predict", content=body, timeout=60)
            for body in bodies
        ]
        time.sleep(2.0)  # the requests are queued, waiting for the batch to fill
        code = slow.stop()
        statuses = [future.result().status_code for future in futures]
    assert statuses == [200] * 4
    assert code in (0, -signal.SIGTERM)
    assert "stopped: 4 requests in 1 batches" in slow.log()


def test_internal_error_is_500_with_a_request_id_in_the_log(trained):
    """A failing forward pass answers 500, logs the traceback under the id, and stays up."""
    import uvicorn

    from archbench.serve.app import ServeConfig, _bind, create_app
    from archbench.serve.model import load_run_model

    model = load_run_model(trained["run_dir"], warmup_batch=2)
    # The served preprocessing is the profiler's: the same float32 tensor, bit for bit.
    expected = normalize(trained["images"][5], trained["best"]["mean"], trained["best"]["std"])
    assert np.array_equal(model.preprocess(_png(trained, 5)), expected.numpy())

    def broken(batch):
        raise RuntimeError("simulated inference failure")

    model.predict = broken
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("archbench.serve").addHandler(handler)
    sock = _bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(ServeConfig(run_dir=trained["run_dir"]), loader=lambda config: model)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        response = httpx.post(f"{url}/predict", content=_png(trained, 0), timeout=30)
        assert response.status_code == 500
        request_id = response.json()["request_id"]
        assert response.headers["x-request-id"] == request_id
        assert any(
            r.levelno == logging.ERROR and request_id in r.getMessage() and r.exc_info
            for r in records
        )
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        logging.getLogger("archbench.serve").removeHandler(handler)
