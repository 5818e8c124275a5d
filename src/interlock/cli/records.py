"""The records store as ``interlock keys`` and ``usage`` open it: from
``--config``'s ``store.url``, else the embedded SQLite in
``$INTERLOCK_DATA_DIR`` (default ``./.interlock/``), the one ``interlock
serve`` opens. No gateway has to run."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interlock.store import Store

__all__ = ["CliError", "read_config", "run_on_store"]


class CliError(Exception):
    """A problem to report in one line, exit status 1."""


def read_config(path: str | None) -> tuple[str | None, frozenset[str]]:
    """The store URL and tier names from ``path``; the defaults without one.

    Only ``store`` and ``tiers`` are read, so the provider secrets the rest of
    the file names need not be in this shell's environment.
    """
    import yaml

    from interlock.config import ENV_PREFIX, GatewayConfig, StoreConfig

    default_tiers = GatewayConfig.model_fields["tiers"].get_default(call_default_factory=True)
    if path is None:
        return None, frozenset(default_tiers)
    try:
        with open(path, encoding="utf-8") as file:
            raw = yaml.safe_load(file) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise CliError(f"{path}: the top level must be a mapping")
    url = StoreConfig.model_validate(raw.get("store") or {}).url
    if url is not None and url.startswith(ENV_PREFIX):
        name = url[len(ENV_PREFIX) :]
        if name not in os.environ:
            raise CliError(f"{path}: store.url: environment variable {name} is not set")
        url = os.environ[name]
    tiers = raw.get("tiers")
    return url, frozenset(tiers) if isinstance(tiers, dict) else frozenset(default_tiers)


StoreCommand = Callable[["Store", frozenset[str]], Awaitable[None]]


def run_on_store(config: str | None, command: StoreCommand) -> int:
    """Open the store, run ``command`` on it (with the config's tiers), close
    it; 1 with one line on stderr for a ``CliError``."""
    try:
        asyncio.run(_run(config, command))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run(config: str | None, command: StoreCommand) -> None:
    from interlock.store import open_store  # SQLAlchemy only for these commands

    url, tiers = read_config(config)
    try:
        store = await open_store(url)
    except Exception as exc:  # a bad URL, an unreachable server: one line, not a traceback
        raise CliError(f"cannot open the records store: {type(exc).__name__}: {exc}") from None
    try:
        await command(store, tiers)
    finally:
        await store.aclose()
