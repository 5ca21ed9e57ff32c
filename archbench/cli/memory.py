"""``archbench memory``: the largest training batch of a network that fits a memory budget."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..errors import ArchbenchError

MEMORY_FILE = "memory.json"


NAME = "memory"
HELP = "largest training batch that fits a memory budget, and training memory per batch"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Find the largest training batch of --arch on --dataset's real images that "
        "fits --budget: on CUDA by torch.cuda.max_memory_allocated with out-of-memory backoff, "
        "on the CPU by the peak resident memory of two training steps in a fresh subprocess. "
        "Writes memory.json with every probe.",
    )
    parser.add_argument("--arch", required=True, help="network: name or FILE.py:FUNC")
    parser.add_argument("--dataset", default="digits", help="training images (default digits)")
    parser.add_argument("--data-dir", help="where datasets live")
    parser.add_argument("--budget", default="4GiB", help="memory budget, e.g. 2GiB (default 4GiB)")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto"
    )
    parser.add_argument("--max-batch", type=int, default=4096, help="largest batch tried")
    parser.add_argument("--threads", type=int, help="intra-op threads of the CPU probes")
    parser.add_argument(
        "--out", help="output directory (default RUNS_DIR/memory/<stamp>-<arch>-<dataset>)"
    )
    parser.add_argument("--runs-dir", default="runs", help="default runs/")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=run_memory)


def run_memory(args: argparse.Namespace, console: Console) -> int:
    from architectures import create_arch

    from .. import files
    from ..measure.memory import MemoryConfig, format_bytes, measure_training_memory, parse_bytes
    from ..train.rundir import ensure_writable, new_run_dir, slug

    budget = parse_bytes(args.budget)
    if args.max_batch < 1:
        raise ArchbenchError(f"--max-batch must be positive, got {args.max_batch}")
    if args.threads is not None and args.threads < 1:
        raise ArchbenchError(f"--threads must be positive, got {args.threads}")
    create_arch(args.arch, num_classes=10)  # an unknown network fails here, before any probe
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = MemoryConfig(
        arch=args.arch,
        dataset=args.dataset,
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else None,
        budget_bytes=budget,
        device=device,
        max_batch=args.max_batch,
        threads=args.threads,
    )
    say = (
        (lambda line: None)
        if args.quiet
        else (lambda line: console.print(f"[dim]{escape(line)}[/]", highlight=False))
    )
    result = measure_training_memory(config, progress=say)  # errors before anything is written
    out_dir = (
        ensure_writable(Path(args.out))
        if args.out
        else new_run_dir(Path(args.runs_dir) / "memory", args.arch, slug(args.dataset))
    )
    files.write_json(out_dir / MEMORY_FILE, result)
    largest = result["largest_batch"]
    qualifier = "" if result["exact"] else " (search stopped at its probe limit: a lower bound)"
    print(
        f"{args.arch}: largest training batch within {format_bytes(budget)} on {device}: "
        f"{largest} ({format_bytes(result['bytes_at_largest'])}){qualifier}"
    )
    if not args.quiet:
        console.print(f"[dim]wrote {escape(str(out_dir / MEMORY_FILE))}[/]", highlight=False)
    return 0
