"""``interlock search index``: add documents to the local search index.

Sources are JSONL files, directories of Markdown/text/HTML pages, or single
pages (``search/sources.py`` says how each is read). The index is
``--index``, else the first ``local`` backend's ``path`` in ``--config``,
else the default file in ``$INTERLOCK_DATA_DIR`` (``./.interlock/``), the
one ``interlock serve`` reads. A document whose url is already indexed is
replaced. Progress goes to stderr, the summary to stdout. A running gateway
sees the new documents on its next search.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import TextIO

from interlock.config import ConfigError, load_config
from interlock.config.search import LocalBackendConfig

__all__ = ["add_parsers", "main"]


class CliError(Exception):
    """A problem to report in one line, exit status 1."""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    search = commands.add_parser("search", help="manage the AI search service's local index")
    actions = search.add_subparsers(dest="search_command", required=True)
    index = actions.add_parser(
        "index",
        help="add documents to the local index",
        description="Index JSONL files ({title, url, body} a line), directories of "
        ".md/.txt/.html pages, or single pages. Re-indexing a url replaces its document.",
    )
    index.add_argument("sources", nargs="*", metavar="SOURCE", help="DIR, FILE.jsonl or a page")
    index.add_argument("--index", help="the index file (default: from --config, else the data dir)")
    index.add_argument("--config", help="a gateway config: its first local backend's path")
    index.add_argument(
        "--bundled", action="store_true", help="also index the corpus bundled with interlock"
    )


def main(args: argparse.Namespace) -> int:
    try:
        return _index(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _index(args: argparse.Namespace) -> int:
    from interlock.search.backends.local import default_index_path
    from interlock.search.index import IndexWriter, bundled_corpus, ensure_index
    from interlock.search.sources import SourceError, open_sources

    if not args.sources and not args.bundled:
        raise CliError("nothing to index: name a SOURCE (or --bundled)")
    path = _index_path(args.index, args.config)
    try:
        if path == default_index_path():
            # The gateway builds the default index from the bundled corpus when
            # it is missing; adding documents to it first must not leave the
            # corpus out for good.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            ensure_index(path)
        total, documents = open_sources([Path(source) for source in args.sources])
        bundled = list(bundled_corpus()) if args.bundled else []
        progress = _Progress(total + len(bundled), sys.stderr)
        started = time.perf_counter()
        with IndexWriter(path) as writer:
            for document in documents:
                writer.add(document)
                progress.advance()
            for document in bundled:
                writer.add(document)
                progress.advance()
            writer.optimize()
            held = writer.count()
    except SourceError as exc:
        raise CliError(str(exc)) from None
    except (OSError, sqlite3.Error) as exc:
        raise CliError(f"{path}: {exc}") from None
    elapsed = time.perf_counter() - started
    progress.finish()
    rate = progress.done / elapsed if elapsed > 0 else 0.0
    print(
        f"indexed {progress.done} documents in {elapsed:.2f} s ({rate:,.0f} docs/s) "
        f"into {path}; it holds {held} documents"
    )
    return 0


def _index_path(index: str | None, config_file: str | None) -> Path:
    if index is not None:
        return Path(index).expanduser()
    from interlock.search.backends.local import default_index_path

    if config_file is None:
        return default_index_path()
    try:
        config = load_config(config_file, dict(os.environ))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    for backend in config.search.backends:
        if isinstance(backend, LocalBackendConfig):
            return Path(backend.path).expanduser() if backend.path else default_index_path()
    raise CliError(f"{config_file}: no local search backend (search.backends); use --index")


class _Progress:
    """``indexing  1200/5000 [#####.........]  2,400 docs/s`` on one redrawn line."""

    WIDTH = 30
    EVERY_S = 0.1

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.done = 0
        self._out = out
        self._started = time.perf_counter()
        self._drawn = 0.0

    def advance(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self._drawn >= self.EVERY_S:
            self._drawn = now
            self._draw(now)

    def finish(self) -> None:
        self._draw(time.perf_counter())
        self._out.write("\n")
        self._out.flush()

    def _draw(self, now: float) -> None:
        total = max(self.total, self.done)
        filled = self.WIDTH * self.done // total if total else self.WIDTH
        rate = self.done / (now - self._started) if now > self._started else 0.0
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._out.write(f"\rindexing {self.done:>7}/{total} [{bar}] {rate:,.0f} docs/s")
        self._out.flush()
