"""``archbench retrieval``: precision@k of similarity search on backbone features, with chance."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import ArchbenchError
from .features import add_source_options, parse_source

SPLITS = ("train", "val", "test")


NAME = "retrieval"
HELP = "similarity search on backbone features: precision@k per class, beside chance"


def add_parser(commands) -> None:
    from ..evaluate.retrieval import METRICS

    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Exact k-nearest-neighbour search on a backbone's cached features (seed "
        "004): each query's k nearest gallery items, itself excluded; precision@k per query "
        "class and overall, each beside its chance level (the class's share of the gallery). "
        "Writes retrieval.json (into RUN_DIR, or --out).",
    )
    add_source_options(parser)
    parser.add_argument("--k", default="10,20", help="comma-separated k values (default 10,20)")
    parser.add_argument("--metric", choices=METRICS, default="euclidean")
    parser.add_argument(
        "--gallery", default="512",
        help="a gallery size sampled from the train split (default 512), or a split name",
    )  # fmt: skip
    parser.add_argument(
        "--queries", default="1000",
        help="queries per repeat, drawn from the sampled gallery (default 1000), or a split name "
        "searched against a split gallery (the gallery's own split: each query is left out of "
        "its own results)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=10, help="sampled galleries (default 10)")
    parser.add_argument("--out", help="where retrieval.json goes (default RUN_DIR/retrieval.json)")
    parser.set_defaults(handler=run_retrieval_command)


def parse_config(args: argparse.Namespace):
    """The search settings and the splits it reads, or one line saying what is wrong."""
    from ..evaluate.retrieval import RetrievalConfig

    try:
        ks = tuple(int(k) for k in args.k.split(","))
    except ValueError:
        raise ArchbenchError(f"--k takes comma-separated integers, got {args.k!r}") from None
    if args.gallery in SPLITS:
        if args.queries not in SPLITS:
            raise ArchbenchError("--gallery SPLIT needs --queries SPLIT (e.g. train and test)")
        config = RetrievalConfig(ks=ks, metric=args.metric, gallery=None, seed=args.seed)
        return config, args.gallery, args.queries
    try:
        gallery, queries = int(args.gallery), int(args.queries)
    except ValueError:
        raise ArchbenchError(
            f"--gallery/--queries take sizes or split names ({', '.join(SPLITS)})"
        ) from None
    config = RetrievalConfig(
        ks=ks, metric=args.metric, gallery=gallery, queries=queries, repeats=args.repeats,
        seed=args.seed,
    )  # fmt: skip
    return config, "train", None


def run_retrieval_command(args: argparse.Namespace, console: Console) -> int:
    from ..evaluate.retrieval import retrieval_rows
    from ..profile.retrieval import RETRIEVAL, run_retrieval

    source = parse_source(args)
    config, gallery_split, query_split = parse_config(args)
    if args.out:
        out = Path(args.out)
    elif source.run_dir is not None:
        out = source.run_dir / RETRIEVAL
    else:
        raise ArchbenchError("with --arch, say where retrieval.json goes: --out PATH")
    result = run_retrieval(
        source, config, gallery_split=gallery_split, query_split=query_split, out=out
    )
    protocol = result["protocol"]
    table = Table(
        title=f"retrieval ({result['metric']}): {protocol['queries']} queries of "
        f"{protocol['query_split']} against {protocol['gallery_split']} "
        f"(gallery {protocol['gallery']}, {protocol['repeats']} repeats) -> {out}"
    )
    rows = retrieval_rows(result)
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row.values()))
    console.print(table)
    return 0
