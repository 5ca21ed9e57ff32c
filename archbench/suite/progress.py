"""The suite's live view: one line per run, updated as jobs report."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .state import EntryState, SuiteState


class LiveProgress:
    """One live line per run (queued / training epoch k / profiling / done / failed)."""

    def __init__(self, state: SuiteState, console: Console, quiet: bool) -> None:
        self.state, self.console, self.quiet = state, console, quiet
        self.lines = {key: describe_entry(e) for key, e in state.entries.items()}
        self.live = Live(self._table(), console=console, transient=False, auto_refresh=False)

    def _table(self) -> Table:
        table = Table(title=f"suite {self.state.name}: {self.state.suite_dir}")
        table.add_column("run")
        table.add_column("status")
        for key, line in self.lines.items():
            table.add_row(key, line)
        return table

    def set(self, key: str, line: str) -> None:
        self.lines[key] = line
        if not self.quiet:
            self.live.update(self._table(), refresh=True)

    def __enter__(self):
        if not self.quiet:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if not self.quiet:
            self.live.__exit__(*exc)
            self.console.print()


def describe_node(node: dict | None) -> str:
    """``on HOST (node 1a2b3c4d)``: enough to tell nodes apart, also on one host."""
    return f"on {node.get('hostname', '?')} (node {str(node.get('id', '?'))[:8]})" if node else ""


def describe_entry(entry: EntryState) -> str:
    if entry.status == "complete":
        return f"[green]done[/] {describe_node(entry.node)}".rstrip()
    if entry.status == "failed":
        where = f" {describe_node(entry.node)}" if entry.node else ""
        return f"[red]failed[/] after {entry.attempts} attempt(s){where}: {entry.error}"
    if entry.status == "interrupted":
        return "interrupted (will resume)"
    return "queued"


def record_result(state: SuiteState, progress: LiveProgress, result: dict) -> EntryState:
    """A job's outcome into ``suite.json``, its attempt into the entry's ``attempt_log``."""
    entry = state.entries[result["key"]]
    for name in ("status", "run_dir", "error"):
        setattr(entry, name, result.get(name))
    if result.get("attempt") and entry.status != "interrupted":  # a stop is not an attempt
        entry.attempt_log.append(result["attempt"])
    state.save()
    progress.set(entry.key, describe_entry(entry))
    return entry
