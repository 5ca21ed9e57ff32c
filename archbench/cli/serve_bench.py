"""``archbench serve-bench``: a bounded load test against a running ``archbench serve``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ..errors import ArchbenchError
from .profile_options import positive_ints

NAME = "serve-bench"
HELP = "load-test a running archbench serve: latency percentiles and throughput"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Send real images to URL/predict at each concurrency level (httpx, async) "
        "and report p50/p90/p99 latency, throughput and errors; results are merged into "
        "serve-bench.json. Only loopback addresses unless --allow-remote.",
    )
    parser.add_argument("url", metavar="URL", help="e.g. http://127.0.0.1:8000")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="image files to send (recursive)")
    source.add_argument("--dataset", help="send this dataset's test images (e.g. digits)")
    parser.add_argument("--data-dir", help="where datasets live (as for run)")
    parser.add_argument("--requests", type=int, default=200, help="per level (default 200)")
    parser.add_argument(
        "--concurrency", default="1,8,32", help="levels, comma-separated (default 1,8,32)"
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop starting requests after S s per level"
    )
    parser.add_argument("--run-dir", help="write serve-bench.json into this run directory")
    parser.add_argument("--out", help="output file or folder (default ./serve-bench.json)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback URL")
    parser.set_defaults(handler=run_serve_bench)


def run_serve_bench(args: argparse.Namespace, console: Console) -> int:
    from ..serve.bench import (
        BenchConfig,
        print_levels,
        read_saved,
        result_path,
        run_bench,
        write_result,
    )

    if args.out and args.run_dir:
        raise ArchbenchError("give --out or --run-dir, not both")
    config = BenchConfig(
        url=args.url,
        images=Path(args.images) if args.images else None,
        dataset=args.dataset,
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else None,
        requests=args.requests,
        concurrency=positive_ints(args.concurrency, "--concurrency"),
        duration_s=args.duration,
        allow_remote=args.allow_remote,
    )
    out = Path(args.out or args.run_dir or ".")
    read_saved(result_path(out))  # a damaged result file is refused before the benchmark runs
    run = run_bench(config)
    path = write_result(run, out)
    print_levels(run, console)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return 0
