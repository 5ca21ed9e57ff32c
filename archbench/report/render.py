"""Render a pandas DataFrame for people (rich table, markdown) or programs (CSV, JSON)."""

from __future__ import annotations

import json

import pandas as pd
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "markdown", "csv", "json")
FREE_TEXT_COLUMNS = frozenset({"description", "reason", "error"})


def render_text(frame: pd.DataFrame, fmt: str) -> str:
    """The frame as markdown, CSV or JSON records (numbers stay numbers)."""
    if fmt == "markdown":
        return frame.to_markdown(index=False)
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=2)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def print_frame(frame: pd.DataFrame, fmt: str, console: Console, *, title: str = "") -> None:
    """Print ``frame`` in ``fmt``; ``table`` is a rich table with thousands separators."""
    if fmt != "table":
        # Machine formats go to stdout untouched: no wrapping, no colour codes.
        print(render_text(frame, fmt))
        return
    table = Table(title=title or None)
    cells = [[_cell(value) for value in row] for row in frame.itertuples(index=False)]
    for index, column in enumerate(frame.columns):
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        widest = max([len(str(column))] + [len(row[index]) for row in cells])
        table.add_column(
            str(column),
            justify="right" if numeric else "left",
            # Free text gives way (ellipsis) in a narrow terminal; names and numbers never do.
            no_wrap=True,
            overflow="ellipsis",
            min_width=None if column in FREE_TEXT_COLUMNS else widest,
            ratio=1 if column in FREE_TEXT_COLUMNS else None,
        )
    for row in cells:
        table.add_row(*row)
    console.print(table)


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:,.4g}"
    return str(value)
