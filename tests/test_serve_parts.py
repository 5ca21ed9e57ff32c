"""The serving parts that need no server: the batcher, sizes, and serve-bench's result file."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from archbench.cli.values import parse_size  # noqa: E402
from archbench.errors import ArchbenchError  # noqa: E402
from archbench.serve.batching import BatchingConfig, DynamicBatcher  # noqa: E402
from archbench.serve.bench import profiler_batch1_ms, serve_bench_table, write_result  # noqa: E402


def test_batcher_groups_up_to_max_batch_and_passes_errors_on():
    sizes: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        if (batch < 0).any():
            raise ValueError("negative input")
        return batch * 2

    async def scenario(config: BatchingConfig, values: list[float]):
        batcher = DynamicBatcher(predict, config)
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(np.array([v], dtype=np.float32)) for v in values),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()

    results = asyncio.run(scenario(BatchingConfig(max_batch=4, max_wait_ms=50), list(range(10))))
    assert sizes == [4, 4, 2]
    assert [float(r[0]) for r in results] == [2.0 * v for v in range(10)]
    sizes.clear()
    asyncio.run(scenario(BatchingConfig(max_batch=1, max_wait_ms=50), [1.0, 2.0, 3.0]))
    assert sizes == [1, 1, 1]
    sizes.clear()
    failed = asyncio.run(scenario(BatchingConfig(max_batch=2, max_wait_ms=50), [1.0, -1.0, 3.0]))
    assert isinstance(failed[0], ValueError) and isinstance(failed[1], ValueError)
    assert float(failed[2][0]) == 6.0  # the next batch is served
    with pytest.raises(ArchbenchError):
        BatchingConfig(max_batch=0).validate()


def test_max_body_sizes():
    assert parse_size("10MB", "--max-body") == 10_000_000
    assert parse_size("512KiB", "--max-body") == 512 * 1024
    assert parse_size("2048", "--max-body") == 2048
    for bad in ("", "ten", "-1MB", "5XB"):
        with pytest.raises(ArchbenchError):
            parse_size(bad, "--max-body")


def test_results_merge_per_setting_next_to_the_profilers_figure(tmp_path):
    """A batched and an unbatched run share one file and one table, with the ratio."""
    (tmp_path / "profile.json").write_text(
        json.dumps({"latency": {"cpu-onnxruntime": {"batch1": {"p50_ms": 0.5}}}})
    )
    assert profiler_batch1_ms(tmp_path) == 0.5
    assert profiler_batch1_ms(tmp_path / "missing") is None

    def run(max_batch: int, rps: float) -> dict:
        level = {"concurrency": 32, "sent": 10, "answered": 10, "errors": 0, "p50_ms": 1.0,
                 "p90_ms": 2.0, "p99_ms": 3.0, "throughput_rps": rps}  # fmt: skip
        server = {"network": "net", "run_dir": str(tmp_path), "backend": "onnxruntime",
                  "max_batch": max_batch, "max_wait_ms": 2.0}  # fmt: skip
        return {"server": server, "levels": [level], "http_overhead_ms": 0.25}

    write_result(run(16, 300.0), tmp_path)
    write_result(run(1, 100.0), tmp_path)
    path = write_result(run(16, 200.0), tmp_path)  # the same setting again replaces the old
    saved = json.loads(path.read_text())
    assert [r["server"]["max_batch"] for r in saved["runs"]] == [1, 16]
    table = serve_bench_table(saved)
    assert "| 2.00x |" in table and "0.500 ms" in table and "0.25 ms" in table
