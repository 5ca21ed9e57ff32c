"""Real ``archbench serve`` servers on 127.0.0.1 for tests, and a cheap trained run to serve.

``ServerProcess`` is the command itself in a subprocess (for start-up, signals and the log);
``served(model)`` runs the same FastAPI app with uvicorn in a thread of the test process, for
tests whose subject is what the server answers rather than the process around it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from archbench.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_NET = f"{REPO_ROOT / 'tests' / 'tiny_digits_net.py'}:build"
START_TIMEOUT_S = 180  # a busy 2-core CI machine imports torch and onnx in tens of seconds


def train_tiny(runs_dir: Path, data_dir: Path, *flags: str, dataset: str = "digits") -> Path:
    """A one-epoch run of the tiny digits network (or ``--arch`` in ``flags``); its directory."""
    arch = [] if "--arch" in flags else ["--arch", TINY_NET]
    code = main(
        ["run", *arch, "--dataset", dataset, "--max-epochs", "1", "--runs-dir", str(runs_dir),
         "--data-dir", str(data_dir), "--no-profile", "--quiet", "--threads", "1", *flags]
    )  # fmt: skip
    assert code == 0
    (run_dir,) = [path for path in runs_dir.iterdir() if path.is_dir()]
    return run_dir


def write_fashion_like(root: Path) -> Path:
    """Real digits written as 28x28 Fashion-MNIST files (the layout torchvision reads)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from tests.test_data import write_idx_gz

    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images[:400]).float()[:, None] * (255 / 16)
    images = F.interpolate(pixels, size=(28, 28), mode="bilinear").round().clamp(0, 255)
    images = images.to(torch.uint8)[:, 0].numpy()
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, part in (("train", slice(0, 300)), ("t10k", slice(300, 400))):
        write_idx_gz(raw / f"{prefix}-images-idx3-ubyte.gz", images[part])
        write_idx_gz(raw / f"{prefix}-labels-idx1-ubyte.gz", bunch.target[part])
    return root


def subprocess_env() -> dict:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT) + (os.pathsep + path if path else "")}


class ServerProcess:
    """``archbench serve RUN_DIR --port 0 FLAGS`` in a subprocess, its log in a file."""

    def __init__(self, run_dir: Path, log_path: Path, *flags: str):
        self.log_path = log_path
        self.stream = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "archbench", "serve", str(run_dir), "--port", "0", *flags],
            stdout=self.stream,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
        )
        self.url = self._wait_ready()

    def log(self) -> str:
        return self.log_path.read_text()

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.log()}")
            if url is None:
                match = re.search(r"on (http://127\.0\.0\.1:\d+)", self.log())
                url = match.group(1) if match else None
            if url is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                        return url
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server not ready within {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, then the exit status (uvicorn re-raises the signal: ``-SIGTERM``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self.stream.close()


@contextlib.contextmanager
def served(model, **settings) -> Iterator[str]:
    """The service for an already loaded ``RunModel`` on 127.0.0.1 in this process; its URL."""
    import uvicorn

    from archbench.serve.app import ServeConfig, _bind, create_app

    sock = _bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = ServeConfig(run_dir=model.run_dir, **settings)
    app = create_app(config, loader=lambda _: model)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.02)
        assert server.started, "the in-process server did not start"
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
