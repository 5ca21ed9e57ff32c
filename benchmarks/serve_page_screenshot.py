"""The page ``archbench serve`` shows at ``GET /``, used in a real headless browser.

Starts ``archbench serve RUN_DIR``, opens ``/`` in Debian's ``chromium`` (headless), chooses an
image in the page's file input exactly as a person would (the DevTools protocol's
``DOM.setFileInputFiles``, which fires the input's change event), waits until the page has drawn
the answer of ``/predict``, and saves a screenshot as ``RUN_DIR/serve-page.png``. The browser is
driven over ``--remote-debugging-pipe`` (NUL-separated JSON on file descriptors 3 and 4), so
nothing beyond the standard library and chromium is needed.

    apt-get install chromium
    python benchmarks/serve_page_screenshot.py RUN_DIR [--image FILE]

Without ``--image`` the first test image of the run's dataset is chosen, saved as PNG.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

WAIT_S = 120


class Browser:
    """Headless chromium, one page, spoken to in DevTools protocol messages over pipes."""

    def __init__(self, profile_dir: Path, width: int = 760, height: int = 720):
        executable = shutil.which("chromium") or shutil.which("chromium-browser")
        if executable is None:
            raise SystemExit("chromium not found: apt-get install chromium")
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def pipes_as_3_and_4() -> None:
            # Copies first: a pipe end may itself be fd 3 or 4, and dup2 onto itself would
            # leave its close-on-exec flag set.
            reading, writing = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self.process = subprocess.Popen(
            [executable, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
             "--disable-gpu", "--no-first-run", f"--user-data-dir={profile_dir}",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=pipes_as_3_and_4, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._ids = itertools.count(1)
        self._buffer = b""
        self.session: str | None = None
        self.size = (width, height)

    def send(self, method: str, **params) -> dict:
        """One command; its result (events that arrive meanwhile are skipped)."""
        message = {"id": next(self._ids), "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next()
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _next(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        width, height = self.size
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise SystemExit(f"the page never satisfied {expression!r}")
            time.sleep(0.1)

    def choose_file(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", nodeId=node, files=[str(path)])

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_server(run_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    stream = open(log_path, "w")  # noqa: SIM115 - the process owns it until the end
    process = subprocess.Popen(
        [sys.executable, "-m", "archbench", "serve", str(run_dir), "--port", "0"],
        stdout=stream, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", log_path.read_text())
        if match:
            try:
                if httpx.get(f"{match.group(1)}/healthz", timeout=5).status_code == 200:
                    return process, match.group(1)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not start: see {log_path}")


def first_test_image(run_dir: Path, out: Path) -> Path:
    """The run's first test image as its dataset holds it, written as PNG."""
    from archbench.data import DataConfig, load_data
    from archbench.data.upload import encode_png
    from archbench.train.rundir import read_run

    train = read_run(run_dir).config["train"]
    config = DataConfig(
        dataset=train["dataset"], data_dir=train.get("data_dir"), download=False, input_shape=None
    )
    out.write_bytes(encode_png(load_data(config).test.images[0]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--image", help="the image to choose (default: a test image)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(args.image) if args.image else first_test_image(run_dir, Path(tmp) / "x.png")
        server, url = start_server(run_dir, Path(tmp) / "serve.log")
        browser = Browser(Path(tmp) / "profile")
        try:
            browser.open(f"{url}/")
            browser.choose_file("#file", image.resolve())
            browser.wait_for("document.querySelectorAll('#result tr').length > 0")
            status = browser.evaluate("document.getElementById('status').textContent")
            rows = browser.evaluate(
                "[...document.querySelectorAll('#result tr')].map(r => r.innerText)"
            )
            out = run_dir / "serve-page.png"
            browser.screenshot(out)
        finally:
            browser.close()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    print(f"page says: {status}")
    for row in rows:
        print("  " + " ".join(row.split()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
