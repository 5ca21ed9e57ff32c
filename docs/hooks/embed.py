"""MkDocs hook: embed committed repository files into pages, so each has one source of truth.

A line ``<!-- embed reports/digits.md -->`` in a page is replaced by that file (a path from the
repository root): markdown as it is, with ``shift-headings`` after the path its headings one level
down (the page keeps its own title); any other file as a fenced code block. Links and images in an
embedded markdown file are relative to its own folder, so every file under ``reports/`` that is
not markdown (the reports' PNGs, the CIFAR-10 plan) is published at ``reports/`` in the site and
relative targets are rewritten from the page's folder. A missing file stops the build.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ("reports",)  # repository folders whose non-markdown files the site serves
EMBED = re.compile(r"^<!-- embed (?P<path>\S+)(?P<shift> shift-headings)? -->$", re.MULTILINE)
LINK = re.compile(r"(!?\[[^\]]*\]\()(?P<target>[^)\s]+)(\))")


def on_files(files: Files, config) -> Files:
    for folder in PUBLISHED:
        for path in sorted((ROOT / folder).iterdir()):
            if path.is_file() and path.suffix != ".md":
                uri = f"{folder}/{path.name}"
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    page_dir = posixpath.dirname(page.file.src_uri)
    return EMBED.sub(lambda m: embed(m["path"], page_dir, shift=bool(m["shift"])), markdown)


def embed(path: str, page_dir: str, *, shift: bool = False) -> str:
    """The text that replaces an embed line of a page in ``page_dir`` (relative to docs/)."""
    source = ROOT / path
    if not source.is_file():
        raise PluginError(f"embed: {path} does not exist (paths are from the repository root)")
    text = source.read_text(encoding="utf-8")
    if source.suffix != ".md":
        return f"```{source.suffix.lstrip('.')}\n{text.rstrip()}\n```"
    if shift:
        text = _shift_headings(text)
    file_dir = posixpath.dirname(path)
    return LINK.sub(lambda m: m[1] + _rebase(m["target"], file_dir, page_dir) + m[3], text)


def _shift_headings(text: str) -> str:
    lines, in_fence = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        lines.append("#" + line if line.startswith("#") and not in_fence else line)
    return "\n".join(lines)


def _rebase(target: str, file_dir: str, page_dir: str) -> str:
    """A link target relative to the embedded file, made relative to the embedding page."""
    if re.match(r"^([a-z]+:|/|#)", target):
        return target
    return posixpath.relpath(posixpath.join(file_dir, target), page_dir or ".")
