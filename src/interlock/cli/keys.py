"""``interlock keys create|list|revoke|rotate`` and ``interlock usage``.

A plain key is printed once and alone on stdout, so ``KEY=$(interlock keys
create --name ci)`` works; what to know about it goes to stderr. The store
keeps only the key's SHA-256. Running gateways see a new or revoked key
within ``admission.key_refresh_s`` (0.5 s by default).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast, get_args

import typer

from interlock.cli.options import ConfigOption, one_of
from interlock.cli.output import note, print_json, print_table
from interlock.cli.records import CliError, run_on_store

if TYPE_CHECKING:
    from interlock.store import KeyRecord, Store
    from interlock.store.ledger import GroupBy

__all__ = ["register"]

_REFRESH_NOTE = "running gateways pick this up within admission.key_refresh_s (0.5 s by default)"
_SHOWN_ONCE = "The key above is shown only now: the store keeps its hash, not the key."

keys_app = typer.Typer(
    name="keys", help="Create, list, revoke and rotate API keys.", no_args_is_help=True
)


# -- argument types --------------------------------------------------------------


def _time(raw: str) -> datetime:
    """ISO 8601; without a zone, UTC."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {raw!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _positive_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise typer.BadParameter(f"must be a positive integer, got {raw!r}")
    return int(raw)


def _usd(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise typer.BadParameter(f"must be an amount in USD >= 0, got {raw!r}")
    return value


def _guardrails(raw: str) -> dict[str, Any]:
    """A guardrails override as JSON, checked as a config file's would be."""
    from interlock.guardrails import GuardrailsConfig

    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter('must be a JSON object, e.g. \'{"pii": {"action": "block"}}\'')
    try:
        GuardrailsConfig().override(value, where="guardrails")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _permission(raw: str) -> str:
    from interlock.config import Permission  # the config models: only when given

    known: tuple[str, ...] = get_args(Permission)
    if raw not in known:
        raise typer.BadParameter(f"{raw!r} is not one of {', '.join(known)}")
    return raw


KeyId = Annotated[str, typer.Argument(metavar="ID", help="the key's id (key_...)")]


# -- commands --------------------------------------------------------------------


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="who the key is for (the usage ledger's key)")],
    tier: Annotated[str, typer.Option(help="a tier from the config")] = "standard",
    models: Annotated[
        str | None, typer.Option(help="comma-separated models it may use (default: all)")
    ] = None,
    rpm: Annotated[
        int | None, typer.Option(parser=_positive_int, help="requests per minute")
    ] = None,
    tpm: Annotated[int | None, typer.Option(parser=_positive_int, help="tokens per minute")] = None,
    tokens_per_day: Annotated[
        int | None, typer.Option(parser=_positive_int, help="tokens per UTC day")
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(parser=_positive_int, help="requests in flight")
    ] = None,
    budget_day: Annotated[float | None, typer.Option(parser=_usd, help="USD per UTC day")] = None,
    budget_month: Annotated[
        float | None, typer.Option(parser=_usd, help="USD per UTC month")
    ] = None,
    permission: Annotated[
        list[str] | None,
        typer.Option(
            parser=_permission,
            help="(repeatable) a permission, as keys[].permissions",
            show_default=False,
        ),
    ] = None,
    expires: Annotated[
        datetime | None, typer.Option(parser=_time, help="ISO 8601 expiry (no zone: UTC)")
    ] = None,
    guardrails: Annotated[
        dict[str, Any] | None,
        typer.Option(
            parser=_guardrails,
            metavar="JSON",
            help="JSON override of the gateway's guardrails for this key, as keys[].guardrails",
        ),
    ] = None,
    config: ConfigOption = None,
) -> int:
    """Create a key; prints it once on stdout."""

    async def command(store: Store, tiers: frozenset[str]) -> None:
        from interlock.store import KeyLimits

        if tier not in tiers:
            raise CliError(f"unknown tier {tier!r} (known: {', '.join(sorted(tiers))})")
        if expires is not None and expires <= datetime.now(UTC):
            raise CliError("--expires is in the past")
        allowed = None if models is None else [m.strip() for m in models.split(",")]
        record, plain = await store.keys.create(
            name,
            tier,
            allowed_models=[m for m in allowed if m] if allowed is not None else None,
            limits=KeyLimits(rpm, tpm, tokens_per_day, max_concurrent),
            budget_usd_day=budget_day,
            budget_usd_month=budget_month,
            permissions=list(permission or []),
            expires_at=expires,
            guardrails=guardrails,
            actor=_actor(),
        )
        print(plain)
        note(f"Created {record.id} ({record.name}, tier {record.tier}); {_REFRESH_NOTE}.")
        note(_SHOWN_ONCE)

    return run_on_store(config, command)


@keys_app.command("list")
def list_keys(
    all_keys: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON, as GET /admin/keys shows")
    ] = False,
    config: ConfigOption = None,
) -> int:
    """List keys (never the keys themselves)."""

    async def command(store: Store, tiers: frozenset[str]) -> None:
        records = await store.keys.list(include_revoked=all_keys)
        if json_out:
            from interlock.api.admin import key_json  # the admin API's shape, only when asked

            print_json([key_json(r) for r in records])
            return
        now = datetime.now(UTC)
        head = ("ID", "NAME", "PREFIX", "TIER", "LIMITS", "MODELS", "EXPIRES", "STATUS")
        print_table(head, (_key_row(r, now) for r in records))

    return run_on_store(config, command)


@keys_app.command("revoke")
def revoke(key_id: KeyId, config: ConfigOption = None) -> int:
    """Revoke a key: gateways refuse it (403 key_revoked)."""

    async def command(store: Store, tiers: frozenset[str]) -> None:
        if not await store.keys.revoke(key_id, actor=_actor()):
            raise CliError(f"no active key {key_id!r}")
        note(f"Revoked {key_id}; {_REFRESH_NOTE}.")

    return run_on_store(config, command)


@keys_app.command("rotate")
def rotate(key_id: KeyId, config: ConfigOption = None) -> int:
    """Replace a key by a new one with the same settings; the old one is revoked."""

    async def command(store: Store, tiers: frozenset[str]) -> None:
        from interlock.store import KeyNotFound, KeyRevoked

        try:
            record, plain = await store.keys.rotate(key_id, actor=_actor())
        except (KeyNotFound, KeyRevoked):
            raise CliError(f"no active key {key_id!r}") from None
        print(plain)
        note(f"Rotated {key_id} -> {record.id} (old key revoked); {_REFRESH_NOTE}.")
        note(_SHOWN_ONCE)

    return run_on_store(config, command)


def usage(
    key: Annotated[str | None, typer.Option(help="a key's name")] = None,
    model: Annotated[str | None, typer.Option(help="a public model name")] = None,
    since: Annotated[
        datetime | None, typer.Option(parser=_time, help="ISO 8601, inclusive (no zone: UTC)")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(parser=_time, help="ISO 8601, exclusive (no zone: UTC)")
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(parser=one_of("key", "model", "day"), metavar="key|model|day"),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON, as GET /admin/usage shows")
    ] = False,
    config: ConfigOption = None,
) -> int:
    """Usage totals from the ledger.

    Requests, tokens, cost and cache hits over [--since, --until).
    """

    async def command(store: Store, tiers: frozenset[str]) -> None:
        rows = await store.ledger.query(
            key_name=key,
            model=model,
            since=since,
            until=until,
            group_by=cast("GroupBy | None", group_by),  # one_of checked it
        )
        if json_out:
            print_json(rows)
            return
        columns = ["requests", "prompt_tokens", "completion_tokens", "cost_usd", "cache_hits"]
        columns.append("units")
        if group_by is not None:
            columns.insert(0, group_by)
        print_table(
            [c.upper() for c in columns],
            ([f"{r[c]:.6f}" if c == "cost_usd" else str(r[c]) for c in columns] for r in rows),
        )

    return run_on_store(config, command)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app)
    app.command("usage")(usage)


# -- output ----------------------------------------------------------------------


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


def _actor() -> str:
    """Who the audit log names for a change made with this command: the shell's user."""
    import getpass
    import os

    user = os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # a container's uid with no passwd entry
            user = "unknown"
    return f"cli:{user}"
