"""``archbench serve``: a run's model behind HTTP, with dynamic batching."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from .values import parse_size

NAME = "serve"
HELP = "serve a run's model over HTTP (POST /predict, GET /, /healthz, /metadata)"


def add_parser(commands) -> None:
    from ..serve.app import BACKENDS
    from ..serve.model import MAX_PIXELS

    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Serve RUN_DIR's model.onnx (exported from best.pt if missing) with ONNX "
        "Runtime behind FastAPI/uvicorn, with the run's own preprocessing (the profiler's) and "
        "dynamic batching; single-label and multi-label runs. GET / is a page to try it. "
        "Needs the serve extra: pip install 'archbench[serve]'.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a trained run directory")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="onnxruntime", help="default onnxruntime"
    )
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=16,
        help="largest dynamic batch; 1 turns batching off (default 16)",
    )
    parser.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="longest wait to fill a batch (default 2)"
    )
    parser.add_argument(
        "--reject-below",
        type=float,
        metavar="P",
        help="answer label 'unknown' when the top probability is below P",
    )
    parser.add_argument("--max-body", default="10MB", help="largest request body (default 10MB)")
    parser.add_argument(
        "--threads", type=int, help="ONNX Runtime threads (default: the run's, else all cores)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        metavar="N",
        help="refuse (413) an image whose header declares more pixels, before decoding it "
        f"(default {MAX_PIXELS:,})",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=30.0,
        metavar="S",
        help="answer 503 to a request not answered within S seconds (default 30)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="on Ctrl-C/SIGTERM: stop accepting, answer requests in flight for up to S seconds, "
        "answer 503 to the rest, then exit (default 10)",
    )
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace, console: Console) -> int:
    from ..serve.app import ServeConfig
    from ..serve.batching import BatchingConfig
    from ..serve.server import serve

    config = ServeConfig(
        run_dir=Path(args.run_dir),
        backend=args.backend,
        host=args.host,
        port=args.port,
        batching=BatchingConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms),
        reject_below=args.reject_below,
        max_body_bytes=parse_size(args.max_body, "--max-body"),
        threads=args.threads,
        max_pixels=args.max_pixels,
        deadline_s=args.deadline,
        drain_timeout_s=args.drain_timeout,
    )
    return serve(config)
