"""One side of an A/B latency comparison: a long-lived process that times forwards on request.

Started by ``latency_regression.py ab`` with ``PYTHONPATH=<tree>``, so ``architectures`` comes
from that tree (the base revision's worktree or the working tree) while this file and
``latency_cases.py`` always come from the working tree. It loads each network once, then answers
one JSON request per line on stdin with one JSON reply per line on stdout:

    (on start)                              -> {"cases": [[arch, backend], ...], "source": path}
    {"build": [[arch, backend]...], "warmup": N} -> {"ready": true}
    {"run": INDEX, "inner": K}              -> {"ns": median of K timed forwards}

Any failure is answered with ``{"error": "one line"}`` and the process exits with status 3.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(threads: int, scratch: Path) -> None:
    import latency_cases
    import torch

    import architectures

    torch.set_num_threads(threads)
    _reply({"cases": latency_cases.all_cases(), "source": architectures.__file__})
    image = latency_cases.make_input()
    forwards = []
    for line in sys.stdin:  # until the driver closes our stdin
        request = json.loads(line)
        if "build" in request:
            for arch, backend in request["build"]:
                forwards.append(latency_cases.build_forward(arch, backend, image, threads, scratch))
            for forward in forwards:
                for _ in range(request["warmup"]):
                    forward()
            gc.collect()
            _reply({"ready": True})
        elif "run" in request:
            forward = forwards[request["run"]]
            times = []
            for _ in range(request["inner"]):
                start = time.perf_counter_ns()
                forward()
                times.append(time.perf_counter_ns() - start)
            _reply({"ns": statistics.median(times)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--scratch", type=Path, required=True, help="for ONNX files (the driver removes it)"
    )
    args = parser.parse_args()
    try:
        serve(args.threads, args.scratch)
    except Exception as error:  # any failure of the tree under test: one line for the driver
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        _reply({"error": f"{type(error).__name__}: {first}"})
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
