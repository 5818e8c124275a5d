"""``interlock keys ...`` and ``interlock usage``: the records store, from a shell.

These open the durable store directly; no gateway has to run. The store is
``store.url`` from ``--config``, else the embedded SQLite file in
``$INTERLOCK_DATA_DIR`` (default ``./.interlock/``), the one ``interlock
serve`` opens. Running gateways see a new or revoked key within
``admission.key_refresh_s`` (0.5 s by default).

A plain key is printed once and alone on stdout, so ``KEY=$(interlock keys
create --name ci)`` works; what to know about it goes to stderr. The store
keeps only the key's SHA-256.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_args

import yaml

from interlock.config import ENV_PREFIX, GatewayConfig, Permission, StoreConfig

if TYPE_CHECKING:
    from interlock.store import KeyRecord, Store

__all__ = ["add_parsers", "main"]

_REFRESH_NOTE = "running gateways pick this up within admission.key_refresh_s (0.5 s by default)"


class CliError(Exception):
    """A problem to report in one line, exit status 1."""


# -- arguments -----------------------------------------------------------------


def _time(raw: str) -> datetime:
    """ISO 8601; without a zone, UTC."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {raw!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _positive_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {raw!r}")
    return int(raw)


def _usd(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be an amount in USD >= 0, got {raw!r}")
    return value


def _guardrails(raw: str) -> dict[str, Any]:
    """A guardrails override as JSON, checked as a config file's would be."""
    from interlock.guardrails import GuardrailsConfig

    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            'must be a JSON object, e.g. \'{"pii": {"action": "block"}}\''
        )
    try:
        GuardrailsConfig().override(value, where="guardrails")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``keys create|list|revoke|rotate`` and ``usage``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", help="a gateway config whose store.url to use (default: the embedded SQLite)"
    )
    keys = commands.add_parser("keys", help="create, list, revoke and rotate API keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_create(actions, common)
    listing = actions.add_parser("list", parents=[common], help="list keys (never the keys)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true", help="JSON, as GET /admin/keys shows")
    for action, help_text in (
        ("revoke", "revoke a key: gateways refuse it (403 key_revoked)"),
        ("rotate", "replace a key by a new one with the same settings; the old one is revoked"),
    ):
        parser = actions.add_parser(action, parents=[common], help=help_text)
        parser.add_argument("key_id", metavar="ID", help="the key's id (key_...)")
    _add_usage(commands, common)


def _add_create(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    create = actions.add_parser(
        "create", parents=[common], help="create a key; prints it once on stdout"
    )
    create.add_argument("--name", required=True, help="who the key is for (the usage ledger's key)")
    create.add_argument("--tier", default="standard", help="a tier from the config (standard)")
    create.add_argument("--models", help="comma-separated models it may use (default: all)")
    create.add_argument("--rpm", type=_positive_int, help="requests per minute")
    create.add_argument("--tpm", type=_positive_int, help="tokens per minute")
    create.add_argument("--tokens-per-day", type=_positive_int)
    create.add_argument("--max-concurrent", type=_positive_int, help="requests in flight")
    create.add_argument("--budget-day", type=_usd, help="USD per UTC day")
    create.add_argument("--budget-month", type=_usd, help="USD per UTC month")
    create.add_argument(
        "--permission",
        action="append",
        default=[],
        choices=get_args(Permission),
        dest="permissions",
    )
    create.add_argument("--expires", type=_time, help="ISO 8601 expiry (no zone: UTC)")
    create.add_argument(
        "--guardrails",
        type=_guardrails,
        help="JSON override of the gateway's guardrails for this key, as keys[].guardrails",
    )


def _add_usage(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    usage = commands.add_parser(
        "usage",
        parents=[common],
        help="usage totals from the ledger",
        description="Requests, tokens, cost and cache hits over [--since, --until).",
    )
    usage.add_argument("--key", help="a key's name")
    usage.add_argument("--model", help="a public model name")
    usage.add_argument("--since", type=_time, help="ISO 8601, inclusive (no zone: UTC)")
    usage.add_argument("--until", type=_time, help="ISO 8601, exclusive (no zone: UTC)")
    usage.add_argument("--group-by", choices=("key", "model", "day"))
    usage.add_argument("--json", action="store_true", help="JSON, as GET /admin/usage shows")


# -- the config file -------------------------------------------------------------


def _read_config(path: str | None) -> tuple[str | None, frozenset[str]]:
    """The store URL and tier names from ``path``; the defaults without one.

    Only ``store`` and ``tiers`` are read, so the provider secrets the rest of
    the file names need not be in this shell's environment.
    """
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


# -- commands --------------------------------------------------------------------

Command = Callable[["Store", argparse.Namespace, frozenset[str]], Awaitable[None]]


async def _create(store: Store, args: argparse.Namespace, tiers: frozenset[str]) -> None:
    from interlock.store import KeyLimits

    if args.tier not in tiers:
        raise CliError(f"unknown tier {args.tier!r} (known: {', '.join(sorted(tiers))})")
    if args.expires is not None and args.expires <= datetime.now(UTC):
        raise CliError("--expires is in the past")
    models = None if args.models is None else [m.strip() for m in args.models.split(",")]
    record, plain = await store.keys.create(
        args.name,
        args.tier,
        allowed_models=[m for m in models if m] if models is not None else None,
        limits=KeyLimits(args.rpm, args.tpm, args.tokens_per_day, args.max_concurrent),
        budget_usd_day=args.budget_day,
        budget_usd_month=args.budget_month,
        permissions=args.permissions,
        expires_at=args.expires,
        guardrails=args.guardrails,
    )
    print(plain)
    _note(f"Created {record.id} ({record.name}, tier {record.tier}); {_REFRESH_NOTE}.")
    _note("The key above is shown only now: the store keeps its hash, not the key.")


async def _list(store: Store, args: argparse.Namespace, tiers: frozenset[str]) -> None:
    records = await store.keys.list(include_revoked=args.all)
    if args.json:
        from interlock.api.admin import key_json  # the admin API's shape, only when asked

        print(json.dumps([key_json(r) for r in records], indent=2))
        return
    now = datetime.now(UTC)
    header = ["ID", "NAME", "PREFIX", "TIER", "LIMITS", "MODELS", "EXPIRES", "STATUS"]
    print(_table([header, *(_key_row(r, now) for r in records)]))


async def _revoke(store: Store, args: argparse.Namespace, tiers: frozenset[str]) -> None:
    if not await store.keys.revoke(args.key_id):
        raise CliError(f"no active key {args.key_id!r}")
    _note(f"Revoked {args.key_id}; {_REFRESH_NOTE}.")


async def _rotate(store: Store, args: argparse.Namespace, tiers: frozenset[str]) -> None:
    from interlock.store import KeyNotFound, KeyRevoked

    try:
        record, plain = await store.keys.rotate(args.key_id)
    except (KeyNotFound, KeyRevoked):
        raise CliError(f"no active key {args.key_id!r}") from None
    print(plain)
    _note(f"Rotated {args.key_id} -> {record.id} (old key revoked); {_REFRESH_NOTE}.")
    _note("The key above is shown only now: the store keeps its hash, not the key.")


async def _usage(store: Store, args: argparse.Namespace, tiers: frozenset[str]) -> None:
    rows = await store.ledger.query(
        key_name=args.key,
        model=args.model,
        since=args.since,
        until=args.until,
        group_by=args.group_by,
    )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    columns = ["requests", "prompt_tokens", "completion_tokens", "cost_usd", "cache_hits", "units"]
    if args.group_by is not None:
        columns.insert(0, args.group_by)
    lines = [[c.upper() for c in columns]]
    for row in rows:
        lines.append([f"{row[c]:.6f}" if c == "cost_usd" else str(row[c]) for c in columns])
    print(_table(lines))


_KEY_COMMANDS: dict[str, Command] = {
    "create": _create,
    "list": _list,
    "revoke": _revoke,
    "rotate": _rotate,
}


# -- output ----------------------------------------------------------------------


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _key_row(record: KeyRecord, now: datetime) -> list[str]:
    limits = ", ".join(
        f"{name}={value}"
        for name, value in (
            ("rpm", record.limits.rpm),
            ("tpm", record.limits.tpm),
            ("tpd", record.limits.tokens_per_day),
            ("concurrent", record.limits.max_concurrent),
        )
        if value is not None
    )
    if record.revoked_at is not None:
        status = "revoked"
    elif record.expires_at is not None and record.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return [
        record.id,
        record.name,
        record.key_prefix,
        record.tier,
        limits or "(tier)",
        ",".join(record.allowed_models) if record.allowed_models else "*",
        record.expires_at.isoformat(timespec="seconds") if record.expires_at else "-",
        status,
    ]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# -- entry point -----------------------------------------------------------------


async def _run(args: argparse.Namespace) -> None:
    from interlock.store import open_store  # SQLAlchemy only for these commands

    url, tiers = _read_config(args.config)
    command = _usage if args.command == "usage" else _KEY_COMMANDS[args.action]
    try:
        store = await open_store(url)
    except Exception as exc:  # a bad URL, an unreachable server: one line, not a traceback
        raise CliError(f"cannot open the records store: {type(exc).__name__}: {exc}") from None
    try:
        await command(store, args, tiers)
    finally:
        await store.aclose()


def main(args: argparse.Namespace) -> int:
    """Run a parsed ``keys`` or ``usage`` command; 1 on a reported error."""
    try:
        asyncio.run(_run(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
