"""``interlock search index``: add documents to the local search index.

Sources are JSONL files, directories of Markdown/text/HTML pages, or single
pages (``search/sources.py`` says how each is read). The index is
``--index``, else the first ``local`` backend's ``path`` in ``--config``,
else the default file in ``$INTERLOCK_DATA_DIR`` (``./.interlock/``), the
one ``interlock serve`` reads. A document whose url is already indexed is
replaced. Progress goes to stderr (a live bar on a terminal), the summary to
stdout. A running gateway sees the new documents on its next search.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from interlock.cli.progress import tracked

__all__ = ["register"]

search_app = typer.Typer(
    name="search", help="Manage the AI search service's local index.", no_args_is_help=True
)


class CliError(Exception):
    """A problem to report in one line, exit status 1."""


@search_app.command("index")
def index(
    sources: Annotated[
        list[Path] | None,
        typer.Argument(metavar="SOURCE", help="DIR, FILE.jsonl or a page", show_default=False),
    ] = None,
    index: Annotated[
        str | None,
        typer.Option("--index", help="the index file (default: from --config, else the data dir)"),
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="a gateway config: its first local backend's path")
    ] = None,
    bundled: Annotated[
        bool, typer.Option("--bundled", help="also index the corpus bundled with interlock")
    ] = False,
) -> int:
    """Add documents to the local index.

    Index JSONL files ({title, url, body} a line), directories of
    .md/.txt/.html pages, or single pages. Re-indexing a url replaces its
    document.
    """
    try:
        return _index(list(sources or []), index, config, bundled)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def register(app: typer.Typer) -> None:
    app.add_typer(search_app)


def _index(sources: list[Path], index: str | None, config: str | None, bundled: bool) -> int:
    from interlock.search.backends.local import default_index_path
    from interlock.search.index import IndexWriter, bundled_corpus, ensure_index
    from interlock.search.sources import SourceError, open_sources

    if not sources and not bundled:
        raise CliError("nothing to index: name a SOURCE (or --bundled)")
    path = _index_path(index, config)
    try:
        if path == default_index_path():
            # The gateway builds the default index from the bundled corpus when
            # it is missing; adding documents to it first must not leave the
            # corpus out for good.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            ensure_index(path)
        total, documents = open_sources(sources)
        corpus = list(bundled_corpus()) if bundled else []
        started = time.perf_counter()
        done = 0
        with tracked("indexing") as progress, IndexWriter(path) as writer:
            progress.update(0, total + len(corpus))
            for document in itertools.chain(documents, corpus):
                writer.add(document)
                done += 1
                progress.update(done, max(done, total + len(corpus)))
            writer.optimize()
            held = writer.count()
    except SourceError as exc:
        raise CliError(str(exc)) from None
    except (OSError, sqlite3.Error) as exc:
        raise CliError(f"{path}: {exc}") from None
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    print(
        f"indexed {done} documents in {elapsed:.2f} s ({rate:,.0f} docs/s) "
        f"into {path}; it holds {held} documents"
    )
    return 0


def _index_path(index: str | None, config_file: str | None) -> Path:
    if index is not None:
        return Path(index).expanduser()
    from interlock.search.backends.local import default_index_path

    if config_file is None:
        return default_index_path()
    from interlock.config import ConfigError, load_config
    from interlock.config.search import LocalBackendConfig

    try:
        config = load_config(config_file, dict(os.environ))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    for backend in config.search.backends:
        if isinstance(backend, LocalBackendConfig):
            return Path(backend.path).expanduser() if backend.path else default_index_path()
    raise CliError(f"{config_file}: no local search backend (search.backends); use --index")
