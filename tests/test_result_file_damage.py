"""A damaged result file that a command merges into is refused, never overwritten."""

from __future__ import annotations

import json

import pytest

from archbench.cli import main
from archbench.errors import ArchbenchError
from archbench.serve.bench import write_result

RUN = {
    "server": {"network": "net", "run_dir": None, "backend": "onnxruntime", "max_batch": 1,
               "max_wait_ms": 0.0},
    "levels": [], "http_overhead_ms": None,
}  # fmt: skip

DAMAGED = {
    "truncated": '{"format": "archbench-serve-bench-1", "runs": [{"server": {"backe',
    "foreign": json.dumps({"format": "something-else", "rows": [1, 2]}),
    "not an object": json.dumps([1, 2, 3]),
    "runs not a list": json.dumps({"format": "archbench-serve-bench-1", "runs": 7}),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED))
def test_a_damaged_serve_bench_json_is_kept_and_named(tmp_path, damage) -> None:
    path = tmp_path / "serve-bench.json"
    path.write_text(DAMAGED[damage])
    with pytest.raises(ArchbenchError) as refused:
        write_result(RUN, tmp_path)
    message = str(refused.value)
    assert str(path) in message and "--out" in message and "move" in message
    assert "\n" not in message
    assert path.read_text() == DAMAGED[damage]


def test_serve_bench_refuses_before_benchmarking(tmp_path, capsys) -> None:
    """Nothing listens on the URL: the refusal must come first, from the file alone."""
    path = tmp_path / "serve-bench.json"
    path.write_text(DAMAGED["truncated"])
    code = main(["serve-bench", "http://127.0.0.1:9", "--dataset", "digits", "--out", str(path),
                 "--data-dir", str(tmp_path / "data"), "--requests", "1",
                 "--concurrency", "1"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert str(path) in error and "corrupt or truncated" in error
    assert path.read_text() == DAMAGED["truncated"]
