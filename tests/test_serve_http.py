"""``archbench serve`` as a process: kept-alive latency, pixel bombs, start-up failures, drain.

Real ``archbench serve`` subprocesses on 127.0.0.1 serving a one-epoch run of the tiny digits
network (the network is not the subject here).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from archbench.cli import main  # noqa: E402
from archbench.data.upload import decode_native, encode_png  # noqa: E402
from tests.serving import (  # noqa: E402
    ServerProcess,
    subprocess_env,
    train_tiny,
    write_fashion_like,
)

BOMB_PIXELS = 6000 * 6000  # the 1-bit PNG: 4.4 KB on the wire, 36 M pixels decoded


def _one_bit_png(side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (side, side), 0).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("serve-http")
    return train_tiny(tmp / "runs", tmp / "data")


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    running = ServerProcess(tiny_run, tmp_path_factory.mktemp("log") / "serve.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def digit_png(tiny_run) -> bytes:
    return encode_png(torch.full((1, 32, 32), 128, dtype=torch.uint8))


@pytest.mark.slow
def test_kept_alive_requests_do_not_wait_for_delayed_acks(server):
    """Nagle's algorithm meeting the client's delayed ACK costs >= 40 ms per kept-alive request
    (Linux's minimum delayed-ACK time) when the server does not set TCP_NODELAY; with it a
    /healthz round trip is about 1 ms. Half the stall, 20x the fixed figure, separates the two
    on any machine that can run the suite."""
    latencies = []
    with httpx.Client(timeout=30) as client:
        client.get(f"{server.url}/healthz")  # opens the connection the others reuse
        for _ in range(20):
            started = time.perf_counter()
            assert client.get(f"{server.url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
    assert statistics.median(latencies) < 0.020, latencies


@pytest.mark.parametrize("form", ["raw", "multipart", "json"])
def test_a_pixel_bomb_is_413_from_its_header(server, digit_png, form):
    bomb = _one_bit_png(6000)
    assert len(bomb) < 10_000  # tiny on the wire: only the header tells
    kwargs = {
        "raw": {"content": bomb},
        "multipart": {"files": {"image": ("bomb.png", bomb, "image/png")}},
        "json": {"json": {"image": base64.b64encode(bomb).decode()}},
    }[form]
    response = httpx.post(f"{server.url}/predict", timeout=30, **kwargs)
    assert response.status_code == 413
    assert "6000x6000" in response.json()["detail"]
    assert httpx.post(f"{server.url}/predict", content=digit_png, timeout=30).status_code == 200


@pytest.mark.slow
def test_healthz_answers_while_32_large_images_decode(tiny_run, tmp_path):
    """32 images under a raised pixel limit, each decoded for real, are in flight; /healthz is
    answered meanwhile, before most of them, and faster than decoding even one of them (were
    bodies decoded on the event loop, it would wait for at least one decode)."""
    heavy = _one_bit_png(6000)
    started = time.perf_counter()
    decode_native(heavy, (1, 32, 32), max_pixels=BOMB_PIXELS)
    one_decode_s = time.perf_counter() - started
    running = ServerProcess(tiny_run, tmp_path / "serve.log", "--max-pixels", str(BOMB_PIXELS))
    try:
        outcome = asyncio.run(_healthz_during(running.url, heavy, bombs=32, probes=5))
    finally:
        running.stop()
    assert outcome["bomb_statuses"] == [200] * 32
    assert outcome["probe_statuses"] == [200] * 5
    # The probes went out once every bomb was sent, and came back before most were answered.
    assert outcome["answered_before_last_probe"] < 16, outcome
    # A generous bound: the median probe against one whole decode measured on this machine.
    assert statistics.median(outcome["probe_s"]) < one_decode_s, (outcome, one_decode_s)


async def _healthz_during(url: str, heavy: bytes, *, bombs: int, probes: int) -> dict:
    answered = []
    sent = asyncio.Event()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as client:

        async def bomb() -> int:
            response = await client.post(f"{url}/predict", content=heavy)
            answered.append(time.perf_counter())
            return response.status_code

        tasks = [asyncio.create_task(bomb()) for _ in range(bombs)]
        while (await client.get(f"{url}/metadata")).json()["in_flight"] < bombs // 2:
            await asyncio.sleep(0.01)  # until the server holds at least half of them
        sent.set()
        probe_s, probe_statuses = [], []
        for _ in range(probes):
            started = time.perf_counter()
            probe_statuses.append((await client.get(f"{url}/healthz")).status_code)
            probe_s.append(time.perf_counter() - started)
        last_probe = time.perf_counter()
        bomb_statuses = await asyncio.gather(*tasks)
    return {
        "bomb_statuses": bomb_statuses,
        "probe_statuses": probe_statuses,
        "probe_s": probe_s,
        "answered_before_last_probe": sum(t < last_probe for t in answered),
    }


def _serve_fails(run_dir: Path, *flags: str) -> str:
    """Run ``archbench serve`` expecting a start-up failure; its stderr."""
    finished = subprocess.run(
        [sys.executable, "-m", "archbench", "serve", str(run_dir), *flags],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert finished.returncode == 2, finished.stderr
    assert "Traceback" not in finished.stderr
    errors = [line for line in finished.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("archbench: error: "), finished.stderr
    return errors[0]


def _copy_run(run_dir: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_dir, to / run_dir.name))


@pytest.mark.slow
def test_start_up_failures_are_one_line_and_exit_2(tiny_run, fashion_run):
    """As a real process: an export that fails, and a port that is taken."""
    # ONNX cannot export adaptive pooling from 7x7 to 2x2 (the tiny net on a 28x28 input).
    assert "cannot export" in _serve_fails(fashion_run, "--port", "0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert f"cannot listen on 127.0.0.1:{port}" in _serve_fails(tiny_run, "--port", str(port))


def test_runs_that_cannot_be_served_are_refused_in_one_line(tiny_run, tmp_path, capsys):
    # A checkpoint without normalization (as an old run's): nothing to preprocess with.
    bare = _copy_run(tiny_run, tmp_path / "bare")
    best = torch.load(bare / "best.pt", weights_only=True)
    config = json.loads((bare / "config.json").read_text())
    for key in ("mean", "std"):
        best.pop(key)
        config["data"].pop(key)
    torch.save(best, bare / "best.pt")
    (bare / "config.json").write_text(json.dumps(config))
    damaged = _copy_run(tiny_run, tmp_path / "damaged")
    (damaged / "best.pt").write_bytes(b"not a checkpoint")
    for run_dir, why in ((bare, "normalization"), (damaged, "corrupt")):
        assert main(["serve", str(run_dir), "--port", "0"]) == 2
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if line.startswith("archbench: error:")]
        assert why in line and "Traceback" not in err


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory) -> Path:
    """The tiny net on Fashion-MNIST-format digits at their native 28x28: not exportable."""
    tmp = tmp_path_factory.mktemp("fashion-run")
    return train_tiny(tmp / "runs", write_fashion_like(tmp / "data"), dataset="fashion-mnist")


@pytest.mark.slow
def test_a_request_past_its_deadline_is_503(tiny_run, tmp_path, digit_png):
    running = ServerProcess(
        tiny_run, tmp_path / "serve.log", "--deadline", "0.5", "--max-batch", "64",
        "--max-wait-ms", "60000",
    )  # fmt: skip
    try:
        response = httpx.post(f"{running.url}/predict", content=digit_png, timeout=60)
    finally:
        running.stop()
    assert response.status_code == 503
    assert "deadline of 0.5 s" in response.json()["detail"]


@pytest.mark.slow
def test_stop_drains_then_answers_503_to_what_inference_did_not_reach(tiny_run, tmp_path):
    """Requests waiting for a batch that would take a minute to fill: SIGTERM, and after the
    1 s drain timeout each is answered 503, and the process exits."""
    running = ServerProcess(
        tiny_run, tmp_path / "serve.log", "--drain-timeout", "1", "--max-batch", "64",
        "--max-wait-ms", "60000",
    )  # fmt: skip
    body = encode_png(torch.zeros((1, 32, 32), dtype=torch.uint8))
    with ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(httpx.post, f"{running.url}/predict", content=body, timeout=120)
            for _ in range(3)
        ]
        while httpx.get(f"{running.url}/metadata", timeout=30).json()["in_flight"] < 3:
            time.sleep(0.02)
        code = running.stop(timeout_s=60)  # far below the minute the batch would wait
        responses = [future.result() for future in futures]
    assert [r.status_code for r in responses] == [503] * 3
    assert all("stopped before" in r.json()["detail"] for r in responses)
    assert code in (0, -15)
    assert "drain timeout 1.0 s: 3 requests answered 503" in running.log()


def test_the_page_is_self_contained_and_posts_what_predict_accepts(server, digit_png):
    from html.parser import HTMLParser

    page = httpx.get(f"{server.url}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    # No external assets: no linked stylesheet or script, no URL to anywhere.
    assert not re.search(r"<link|<script[^>]+src=|https?://|url\(", html)

    class Form(HTMLParser):
        form: dict = {}
        file_input: dict = {}

        def handle_starttag(self, tag, attrs):
            if tag == "form":
                self.form = dict(attrs)
            if tag == "input" and dict(attrs).get("type") == "file":
                self.file_input = dict(attrs)

    parsed = Form()
    parsed.feed(html)
    assert parsed.form["method"] == "post" and parsed.form["enctype"] == "multipart/form-data"
    field = parsed.file_input["name"]
    assert f'body.append("{field}"' in html  # the script sends the same field as the form
    # What the page sends: a multipart upload of the chosen file under that field.
    url = httpx.URL(f"{server.url}/").join(parsed.form["action"])
    answer = httpx.post(url, files={field: ("digit.png", digit_png, "image/png")}, timeout=30)
    assert answer.status_code == 200
    probabilities = answer.json()["probabilities"]
    assert list(probabilities) == [str(d) for d in range(10)]
    assert "archbench" in html and "tiny_digits_net" in html
