"""The fresh interpreter behind :mod:`archbench.measure.coldstart` (run by path, not as a module).

Run as ``python coldstart_child.py SPEC_JSON``: it imports only what its backend needs (so an ONNX
Runtime cold start does not pay for torch), times each stage of a cold start, and prints one JSON
line. Its peak resident memory right after the imports (``baseline_rss_bytes``) is what an
interpreter with the same imports costs, which :mod:`coldstart` subtracts from the final peak
(one interpreter for both: a second one only to import would double the cost). Being run by
path keeps package ``__init__`` files (and whatever they import) out of both measurements.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started running its program.

    ``VmHWM`` from ``/proc/self/status`` where there is one: ``ru_maxrss`` survives ``exec``, so
    in a child forked from a large parent it would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _torch_runner(spec: dict, stages: dict):
    start = time.perf_counter()
    import numpy as np
    import torch

    from architectures import create_arch

    stages["import_ms"] = _ms(start)
    stages["baseline_rss_bytes"] = peak_rss_bytes()
    torch.set_num_threads(int(spec["threads"]))
    device = "cuda" if spec["backend"].startswith("cuda-") else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec["backend"].rsplit("-")[-1])
    start = time.perf_counter()
    state = torch.load(spec["state_dict"], map_location=device, weights_only=True)
    stages["load_ms"] = _ms(start)
    start = time.perf_counter()
    model = create_arch(spec["arch"], num_classes=int(spec["num_classes"]))
    model.load_state_dict(state)
    model = model.to(device).eval()
    if dtype is not None:
        model = model.to(dtype)
    stages["session_ms"] = _ms(start)
    x = torch.from_numpy(np.load(spec["sample"])).to(device, dtype or torch.float32)

    def run():
        with torch.inference_mode():
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def _onnxruntime_runner(spec: dict, stages: dict):
    start = time.perf_counter()
    import numpy as np
    import onnxruntime  # noqa: F401  (the import a deployment pays for, timed here)

    from archbench.measure.onnxrt import create_session

    stages["import_ms"] = _ms(start)
    stages["baseline_rss_bytes"] = peak_rss_bytes()
    start = time.perf_counter()
    model_bytes = Path(spec["onnx"]).read_bytes()
    stages["load_ms"] = _ms(start)
    start = time.perf_counter()
    device = "cuda" if spec["backend"].startswith("cuda-") else "cpu"
    opened = create_session(model_bytes, device=device, threads=int(spec["threads"]))
    if opened.fallback:
        raise RuntimeError(opened.fallback)
    session = opened.session
    stages["session_ms"] = _ms(start)
    feed = {session.get_inputs()[0].name: np.load(spec["sample"])}
    if spec["backend"].endswith("-fp16"):
        feed = {name: value.astype(np.float16) for name, value in feed.items()}
    return lambda: session.run(None, feed)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    stages: dict = {}
    make = _onnxruntime_runner if "onnxruntime" in spec["backend"] else _torch_runner
    run = make(spec, stages)
    start = time.perf_counter()
    run()
    stages["first_inference_ms"] = _ms(start)
    steady = []
    for _ in range(int(spec["steady_passes"])):
        start = time.perf_counter()
        run()
        steady.append(_ms(start))
    stages["steady_ms"] = statistics.median(steady)
    stages["peak_rss_bytes"] = peak_rss_bytes()
    stages["pid"] = os.getpid()
    print(json.dumps(stages))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
