"""Serving figures for the README, measured fairly: two servers per run, benched alternately.

For each RUN_DIR (a trained and profiled run), this starts two ``archbench serve`` processes,
one with ``--max-batch 1`` (A) and one with dynamic batching (B), and runs ``serve-bench``'s own
load test against them in turn, A B A B ..., for ``--rounds`` rounds, so machine drift touches
both alike. Per cell it reports the median over rounds, next to what the issue's targets compare
it with: the servers' batch-1 predict p50, timed in this process each round with the servers'
session options (the profile's figure, from another moment, is shown beside it), the HTTP floor
(kept-alive ``GET /healthz`` p50) and the decode time of the sent images. The client's CPU
share is reported too: client and server share the machine's cores, and /healthz is timed
while 32 pixel bombs are in flight (target: under 50 ms). ``uptime`` is recorded before and
after; run it on a quiet machine (load average < 2), with nothing else running.

    python benchmarks/serve_ab.py RUNS/squeezenet_dsc-digits RUNS/alexnet-digits \\
        --dataset digits --rounds 3 --requests 400

Writes ``serve-ab.json`` and ``serve-ab.md`` into each run directory and prints the tables.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from archbench import files
from archbench.measure.sysinfo import describe_system
from archbench.serve.bench import BenchConfig, load_images, profiler_batch1_ms, run_bench
from archbench.serve.model import load_run_model

START_TIMEOUT_S = 300
PREDICT_PASSES = 200  # in-process predictions timed per round
WARMUP_PREDICTS = 20
TARGETS = """targets: HTTP floor < 2 ms; p50 at concurrency 1 <= ORT batch-1 p50 + 3 ms; p99 at
concurrency 8 <= 3 x (ORT batch-1 p50 + HTTP floor + decode); squeezenet_dsc >= 500 req/s at
concurrency 32; batching >= 2x the throughput at concurrency 32 (alexnet)"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def start_server(run_dir: Path, log_path: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    stream = open(log_path, "w")  # noqa: SIM115 - the process owns it until the end
    process = subprocess.Popen(
        [sys.executable, "-m", "archbench", "serve", str(run_dir), "--port", "0", *flags],
        stdout=stream,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited {process.returncode}:\n{log_path.read_text()}")
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", log_path.read_text())
        if match:
            try:
                if httpx.get(f"{match.group(1)}/healthz", timeout=5).status_code == 200:
                    return process, match.group(1)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server not ready within {START_TIMEOUT_S} s: {log_path}")


def decode_ms(model, images: list[tuple[str, bytes]]) -> float:
    """Median time to turn one sent image into the network's input, as the server does."""
    times = []
    for _, data in images[:200]:
        started = time.perf_counter()
        model.preprocess(data)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def one_bit_png(side: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (side, side), 0).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


async def _healthz_while(url: str, body: bytes, bombs: int = 32, probes: int = 20) -> dict:
    """/healthz latencies (ms) measured while ``bombs`` posts of ``body`` are in flight."""
    import asyncio

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as client:
        tasks = [
            asyncio.create_task(client.post(f"{url}/predict", content=body)) for _ in range(bombs)
        ]
        await asyncio.sleep(0.05)  # let them reach the server
        latencies = []
        for _ in range(probes):
            started = time.perf_counter()
            await client.get(f"{url}/healthz")
            latencies.append((time.perf_counter() - started) * 1000)
        statuses = sorted({(await task).status_code for task in tasks})
    return {
        "statuses": statuses,
        "healthz_p50_ms": statistics.median(latencies),
        "healthz_max_ms": max(latencies),
    }


def healthz_under_bombs(url: str) -> dict:
    """The issue's 1-bit 6000x6000 PNG (refused from its header) and a 4000x4000 one (16 M
    pixels, at the default limit: decoded for real), 32 in flight each."""
    import asyncio

    return {
        f"32 x 1-bit {side}x{side} PNG": asyncio.run(_healthz_while(url, one_bit_png(side)))
        for side in (6000, 4000)
    }


def predict_p50_ms(model, images: list[tuple[str, bytes]], passes: int = PREDICT_PASSES) -> float:
    """Batch-1 p50 of the servers' own compute, in this process: preprocess (outside the
    timing) and ``RunModel.predict``, the ONNX Runtime session with the servers' options."""
    tensors = [model.preprocess(data)[None] for _, data in images[:passes]]
    for tensor in tensors[:WARMUP_PREDICTS]:
        model.predict(tensor)
    times = []
    for index in range(passes):
        tensor = tensors[index % len(tensors)]
        started = time.perf_counter()
        model.predict(tensor)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def median_level(rounds: list[dict], concurrency: int, key: str) -> float | None:
    values = [
        level[key]
        for run in rounds
        for level in run["levels"]
        if level["concurrency"] == concurrency and level.get(key) is not None
    ]
    return statistics.median(values) if values else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def table(name: str, results: dict, concurrency: list[int], facts: dict) -> str:
    lines = [
        f"### {name}",
        "",
        f"in-process batch-1 predict p50 (ONNX Runtime, the servers' session options, median of "
        f"rounds) {facts['ort_ms']:.2f} ms (the profile's: {_ms(facts.get('ort_profile_ms'))}); "
        f"HTTP floor (kept-alive /healthz p50, median of rounds) {facts['floor_ms']:.2f} ms; "
        f"decode {facts['decode_ms']:.2f} ms",
        "",
        "| setting | concurrency | p50 ms | p99 ms | req/s | client CPU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for setting, rounds in results.items():
        for level in concurrency:
            share = median_level(rounds, level, "client_cpu_share")
            lines.append(
                f"| {setting} | {level} | {median_level(rounds, level, 'p50_ms'):.2f} | "
                f"{median_level(rounds, level, 'p99_ms'):.2f} | "
                f"{median_level(rounds, level, 'throughput_rps'):.0f} | "
                f"{'-' if share is None else f'{100 * share:.0f}%'} |"
            )
    return "\n".join(lines) + "\n"


def bench_run(run_dir: Path, args: argparse.Namespace, concurrency: list[int]) -> dict:
    settings = {
        "A: --max-batch 1": ["--max-batch", "1"],
        f"B: --max-batch {args.max_batch}, wait {args.max_wait_ms:g} ms": [
            "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
        ],
    }  # fmt: skip
    config = BenchConfig(
        url="http://127.0.0.1:1",  # replaced per server below
        dataset=args.dataset,
        images=Path(args.images) if args.images else None,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        requests=args.requests,
        concurrency=tuple(concurrency),
    )
    images = load_images(config)
    servers = {
        name: start_server(run_dir, run_dir / f"serve-ab-{index}.log", *flags)
        for index, (name, flags) in enumerate(settings.items())
    }
    results: dict[str, list[dict]] = {name: [] for name in settings}
    in_process = load_run_model(run_dir)  # the servers' own model, session and thread count
    in_process_ms: list[float] = []
    try:
        for round_index in range(args.rounds):
            in_process_ms.append(predict_p50_ms(in_process, images))
            for name, (_, url) in servers.items():  # A B, A B, ...
                print(f"{run_dir.name}: round {round_index + 1}, {name}", flush=True)
                results[name].append(run_bench(_replace_url(config, url)))
        bombs = healthz_under_bombs(next(iter(servers.values()))[1])
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    floors = [r["http_overhead_ms"] for rounds in results.values() for r in rounds]
    facts = {
        # the serving path's compute, measured here in each round: what the servers add to it
        # is serving; the profiler's figure (an earlier moment) is kept for reference only
        "ort_ms": statistics.median(in_process_ms),
        "ort_ms_rounds": in_process_ms,
        "ort_profile_ms": profiler_batch1_ms(run_dir),
        "floor_ms": statistics.median(floors),
        "decode_ms": decode_ms(in_process, images),
    }
    return {"results": results, "facts": facts, "bombs": bombs}


def _replace_url(config: BenchConfig, url: str) -> BenchConfig:
    from dataclasses import replace

    return replace(config, url=url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="send this dataset's test images (e.g. digits)")
    source.add_argument("--images", metavar="DIR", help="image files to send")
    parser.add_argument("--data-dir")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds (default 3)")
    parser.add_argument("--requests", type=int, default=400, help="per level (default 400)")
    parser.add_argument("--concurrency", default="1,8,32", help="default 1,8,32")
    parser.add_argument("--max-batch", type=int, default=16, help="B's max batch (default 16)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="B's wait (default 2)")
    args = parser.parse_args(argv)
    concurrency = [int(v) for v in args.concurrency.split(",")]
    before = uptime()
    print(before, flush=True)
    measured = {}
    for run_dir in map(Path, args.run_dirs):
        measured[run_dir] = bench_run(run_dir, args, concurrency)
    after = uptime()
    print(after)
    for run_dir, outcome in measured.items():
        text = table(run_dir.name, outcome["results"], concurrency, outcome["facts"])
        for what, seen in outcome["bombs"].items():
            text += (
                f"\n/healthz while {what} are in flight (answered {seen['statuses']}): p50 "
                f"{seen['healthz_p50_ms']:.1f} ms, max {seen['healthz_max_ms']:.1f} ms"
            )
        text += f"\nuptime before: `{before}`; after: `{after}`\n\n{TARGETS}\n"
        print(text)
        (run_dir / "serve-ab.md").write_text(text)
        files.write_json(
            run_dir / "serve-ab.json",
            {"uptime": [before, after], "system": describe_system(), **outcome},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
