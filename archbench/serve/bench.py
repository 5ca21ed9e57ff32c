"""``archbench serve-bench``: a bounded load test of a running ``archbench serve``.

Per concurrency level, ``requests`` POSTs of real images (raw bodies, so the client's own CPU
cost stays small on the machine it shares with the server) are kept ``concurrency`` at a time in
flight with ``httpx.AsyncClient`` and a semaphore, after one untimed round that opens the
connections. Each level reports answered requests, errors, p50/p90/p99 latency and throughput.
``http_overhead_ms`` is the latency of ``GET /healthz`` at concurrency 1 on a kept-alive
connection: the HTTP round trip without decoding or inference. Each level also records the
client's own CPU time (``client_cpu_s``, and ``client_cpu_share`` of one core): on a small
machine the client competes with the server it measures.

Like the profiler, it holds the node's measuring lock (:mod:`archbench.exclusive`) while it
measures, so no archbench training epoch runs meanwhile; other programs still can.

Results are merged into ``serve-bench.json`` (one entry per server setting: backend, max batch,
max wait), so runs against a server with and without batching end up side by side, and
:func:`serve_bench_table` turns the file into the report's serving table.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..errors import ArchbenchError
from ..measure import exclusive

RESULT_FILE = "serve-bench.json"
FORMAT = "archbench-serve-bench-1"
OVERHEAD_REQUESTS = 50
MAX_ERROR_EXAMPLES = 5


@dataclass(frozen=True)
class BenchConfig:
    url: str
    images: Path | None = None  # a folder of image files (searched recursively)
    dataset: str | None = None  # or a dataset's test split, sent as PNG
    data_dir: Path | None = None
    requests: int = 200  # per concurrency level
    concurrency: tuple[int, ...] = (1, 8, 32)
    duration_s: float | None = None  # stop starting requests after this long, per level
    allow_remote: bool = False
    timeout_s: float = 60.0

    def validate(self) -> None:
        if (self.images is None) == (self.dataset is None):
            raise ArchbenchError("give --images DIR or --dataset NAME (one of them)")
        if self.requests < 1:
            raise ArchbenchError(f"--requests must be positive, got {self.requests}")
        if not self.concurrency or min(self.concurrency) < 1:
            raise ArchbenchError("--concurrency takes positive integers, e.g. 1,8,32")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ArchbenchError(f"--duration must be positive, got {self.duration_s:g}")
        check_loopback(self.url, self.allow_remote)


def check_loopback(url: str, allow_remote: bool) -> None:
    """Refuse to load-test anything but this machine, unless told otherwise."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except Exception:
        raise ArchbenchError(f"not a URL: {url!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ArchbenchError(f"not an http(s) URL: {url!r}")
    if allow_remote or parsed.host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(parsed.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ArchbenchError(
            f"refusing to load-test {parsed.host}: not a loopback address (pass --allow-remote "
            "to test a server you are responsible for)"
        )


def _encode_png(pixels) -> bytes:
    from ..data.upload import encode_png

    return encode_png(pixels)


def load_images(config: BenchConfig) -> list[tuple[str, bytes]]:
    """``(content type, bytes)`` of every image to send, in a fixed order."""
    if config.images is not None:
        from ..data.imagefolder import IMAGE_EXTENSIONS

        root = Path(config.images).expanduser()
        if not root.is_dir():
            raise ArchbenchError(f"--images {root} is not a directory")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise ArchbenchError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
        kind = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
        return [
            (f"image/{kind.get(p.suffix.lower(), 'octet-stream')}", p.read_bytes()) for p in paths
        ]
    from ..data import DataConfig, load_data

    # The test images as the dataset holds them (native shape): the server fits them itself.
    data = load_data(
        DataConfig(
            dataset=config.dataset, data_dir=config.data_dir, download=False, input_shape=None
        )
    )
    return [("image/png", _encode_png(image)) for image in data.test.images]


def _percentiles(latencies_ms: list[float]) -> dict[str, float | None]:
    if not latencies_ms:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None}
    values = np.asarray(latencies_ms)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(values.mean()),
    }


async def _level(client, url: str, images, concurrency: int, config: BenchConfig) -> dict:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []

    async def one(index: int, timed: bool) -> None:
        content_type, body = images[index % len(images)]
        async with semaphore:
            start = time.perf_counter()
            try:
                response = await client.post(
                    url, content=body, headers={"content-type": content_type}
                )
                problem = None if response.status_code == 200 else f"HTTP {response.status_code}"
            except Exception as error:  # a refused or dropped connection is an error, not a crash
                problem = f"{type(error).__name__}: {error}"
            elapsed = (time.perf_counter() - start) * 1000
        if timed:
            (errors.append(problem) if problem else latencies.append(elapsed))

    await asyncio.gather(*(one(i, timed=False) for i in range(concurrency)))  # open connections
    started = time.perf_counter()
    cpu_started = time.process_time()  # this client's own CPU: it shares the cores it measures
    deadline = None if config.duration_s is None else started + config.duration_s
    tasks, sent = [], 0
    for index in range(config.requests):
        if deadline is not None and time.perf_counter() > deadline:
            break
        await semaphore.acquire()  # start a request only when a slot is free
        semaphore.release()
        tasks.append(asyncio.create_task(one(index, timed=True)))
        sent += 1
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    client_cpu_s = time.process_time() - cpu_started
    return {
        "concurrency": concurrency,
        "sent": sent,
        "answered": len(latencies),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:MAX_ERROR_EXAMPLES],
        **_percentiles(latencies),
        "throughput_rps": len(latencies) / seconds if seconds > 0 else None,
        "seconds": seconds,
        "client_cpu_s": client_cpu_s,
        "client_cpu_share": client_cpu_s / seconds if seconds > 0 else None,  # of one core
    }


async def _bench(config: BenchConfig, images) -> dict[str, Any]:
    import httpx

    base = config.url.rstrip("/")
    limits = httpx.Limits(max_connections=max(config.concurrency) + 1)
    async with httpx.AsyncClient(timeout=config.timeout_s, limits=limits) as client:
        try:
            health = await client.get(f"{base}/healthz")
            metadata = (await client.get(f"{base}/metadata")).json()
        except httpx.HTTPError as error:
            raise ArchbenchError(f"no archbench server answers at {base}: {error}") from None
        if health.status_code != 200:
            raise ArchbenchError(f"{base}/healthz answers {health.status_code}: not ready")
        record: dict[str, Any] = {}
        with exclusive.measuring(record):  # no archbench training epoch runs meanwhile
            overhead = []
            for _ in range(OVERHEAD_REQUESTS):
                start = time.perf_counter()
                await client.get(f"{base}/healthz")
                overhead.append((time.perf_counter() - start) * 1000)
            levels = [
                await _level(client, f"{base}/predict", images, level, config)
                for level in config.concurrency
            ]
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "url": base,
        "server": metadata,
        "settings": {k: v for k, v in asdict(config).items() if k in ("requests", "duration_s")},
        "images": len(images),
        "http_overhead_ms": _percentiles(overhead)["p50_ms"],
        "levels": levels,
        "exclusive": record,
    }


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Measure every concurrency level against the server at ``config.url``."""
    config.validate()
    images = load_images(config)
    return asyncio.run(_bench(config, images))


def _setting_key(run: dict) -> tuple:
    server = run.get("server", {})
    keys = ("run_dir", "backend", "max_batch", "max_wait_ms")
    return tuple(str(server.get(k)) for k in keys)


def profiler_batch1_ms(run_dir: str | Path | None) -> float | None:
    """The profiler's batch-1 ONNX Runtime p50 for the served run, when it has been profiled."""
    if not run_dir:
        return None
    try:
        profile = files.read_json(Path(run_dir) / "profile.json")
        return float(profile["latency"]["cpu-onnxruntime"]["batch1"]["p50_ms"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def result_path(out: Path) -> Path:
    """The file results go to: ``out`` itself, or ``serve-bench.json`` in the folder ``out``."""
    out = Path(out).expanduser()
    return out / RESULT_FILE if out.is_dir() or not out.suffix else out


def read_saved(path: Path) -> dict[str, Any]:
    """The results already in ``path`` (none yet: an empty file's worth), or one line refusing
    to go on: a damaged or foreign file would lose its earlier entries if merged over."""
    if not path.exists():
        return {"format": FORMAT, "runs": []}
    remedy = (
        f"it is not overwritten, since its earlier results would be lost: write elsewhere with "
        f"--out, or move {path} aside"
    )
    try:
        saved = files.read_json(path)
    except OSError as error:
        raise ArchbenchError(f"{path} cannot be read ({error.strerror}); {remedy}") from None
    except ValueError as error:
        raise ArchbenchError(f"{path} is corrupt or truncated ({error}); {remedy}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        found = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
        raise ArchbenchError(f"{path} is not a {FORMAT} file (found {found!r}); {remedy}")
    if not isinstance(saved.get("runs"), list):
        raise ArchbenchError(f"{path} is corrupt (its 'runs' is not a list); {remedy}")
    return saved


def write_result(run: dict, out: Path) -> Path:
    """Merge ``run`` into ``out`` (a file, or a folder for ``serve-bench.json``)."""
    out = result_path(out)
    saved = read_saved(out)
    saved["runs"] = [r for r in saved["runs"] if _setting_key(r) != _setting_key(run)] + [run]
    saved["profiler_batch1_ms"] = profiler_batch1_ms(run["server"].get("run_dir"))
    files.write_json(out, saved)
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _batching(server: dict) -> str:
    if server.get("max_batch") == 1:
        return "off (max batch 1)"
    return f"max batch {server.get('max_batch')}, wait {server.get('max_wait_ms'):g} ms"


def serve_bench_table(saved: dict) -> str:
    """Markdown serving table of a ``serve-bench.json``, one row per setting and concurrency.

    The profiler's batch-1 ONNX Runtime p50 and the measured HTTP overhead go under it, and
    each batching row's throughput is also given relative to the unbatched row at the same
    concurrency, when both were measured.
    """
    header = (
        "| network | batching | concurrency | answered/sent | errors | p50 ms | p90 ms | "
        "p99 ms | req/s | vs no batching |"
    )
    lines = [header, "|" + " --- |" * 10]
    runs = sorted(saved.get("runs", []), key=lambda r: (r["server"].get("max_batch") != 1,))
    unbatched = {
        (r["server"].get("run_dir"), level["concurrency"]): level["throughput_rps"]
        for r in runs
        if r["server"].get("max_batch") == 1
        for level in r["levels"]
    }
    for run in runs:
        server = run["server"]
        for level in run["levels"]:
            base = unbatched.get((server.get("run_dir"), level["concurrency"]))
            ratio = "-"
            if server.get("max_batch") != 1 and base and level["throughput_rps"]:
                ratio = f"{level['throughput_rps'] / base:.2f}x"
            lines.append(
                f"| {server.get('network')} | {_batching(server)} | {level['concurrency']} | "
                f"{level['answered']}/{level['sent']} | {level['errors']} | "
                f"{_ms(level['p50_ms'])} | {_ms(level['p90_ms'])} | {_ms(level['p99_ms'])} | "
                f"{_ms(level['throughput_rps'])} | {ratio} |"
            )
    notes = []
    if saved.get("profiler_batch1_ms") is not None:
        notes.append(f"profiler batch-1 ONNX Runtime p50: {saved['profiler_batch1_ms']:.3f} ms")
    overheads = [r["http_overhead_ms"] for r in runs if r.get("http_overhead_ms") is not None]
    if overheads:
        notes.append(f"HTTP round trip (GET /healthz p50): {min(overheads):.2f} ms")
    return "\n".join(lines) + ("\n\n" + "; ".join(notes) + "\n" if notes else "\n")


def print_levels(run: dict, console) -> None:
    """The levels just measured, as a terminal table."""
    from rich.table import Table

    server = run["server"]
    table = Table(title=f"{server.get('network')} at {run['url']} ({_batching(server)})")
    columns = ("concurrency", "answered/sent", "errors", "p50 ms", "p90 ms", "p99 ms", "req/s")
    for column in (*columns, "client CPU"):
        table.add_column(column, justify="right")
    for level in run["levels"]:
        table.add_row(
            str(level["concurrency"]),
            f"{level['answered']}/{level['sent']}",
            str(level["errors"]),
            _ms(level["p50_ms"]),
            _ms(level["p90_ms"]),
            _ms(level["p99_ms"]),
            _ms(level["throughput_rps"]),
            f"{100 * level['client_cpu_share']:.0f}%" if level.get("client_cpu_share") else "-",
        )
    console.print(table)
    console.print(f"HTTP round trip (GET /healthz p50): {_ms(run['http_overhead_ms'])} ms")
