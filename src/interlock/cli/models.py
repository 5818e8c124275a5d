"""``interlock models ...``: the model registry of a running gateway, from a shell.

``list``, ``show``, ``register``, ``update``, ``delete``, ``canary``,
``promote``, ``rollback`` and ``audit`` call the admin API
(``/admin/models``, ``/admin/audit``) of ``--url`` (``$INTERLOCK_URL``, else
http://127.0.0.1:8080) with the admin key ``--admin-key`` (else
``$INTERLOCK_ADMIN_KEY``). Every call names who makes it in
``X-Interlock-Actor`` (``--actor``, else ``$USER``), which the audit log
records. Only the standard library speaks HTTP; every call has ``--timeout``.
Tables and ``--json`` go to stdout, notes to stderr.

``export-minilm`` makes no call: it exports the packaged MiniLM to ONNX
(the ``injection-model`` extra) and prints how to register it.

Exit status: 0 done; 1 the gateway refused (its ``error.message`` is
printed) or a spec file is unreadable; 2 a usage error, no admin key, or the
gateway cannot be reached.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlencode

import typer

from interlock.cli.errors import CliError, reported
from interlock.cli.models_view import audit_summary, print_version, print_versions, when
from interlock.cli.options import (
    JsonOption,
    TimeoutOption,
    UrlOption,
    one_of,
    positive_seconds,
)
from interlock.cli.output import print_json, print_table

if TYPE_CHECKING:
    from interlock.cli.gateway_http import Gateway

__all__ = ["register"]

# What `show --json` prints but a spec does not take: such a file registers anew.
_SHOWN_ONLY = frozenset(
    {
        "object",
        "status",
        "traffic_share",
        "sticky",
        "created_at",
        "updated_at",
        "updated_by",
        "retired_at",
    }
)


def version_path(name: str, version: str, action: str = "") -> str:
    return f"/admin/models/{quote(name, safe='')}/versions/{quote(version, safe='')}{action}"


# -- arguments -------------------------------------------------------------------

models_app = typer.Typer(
    name="models", help="Manage the model registry of a running gateway.", no_args_is_help=True
)


def _param(raw: str) -> tuple[str, Any]:
    """``KEY=VALUE``; the value as JSON when it parses (``null`` removes the key)."""
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"must be KEY=VALUE, got {raw!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _timeout(raw: str) -> tuple[str, float]:
    """``read_s=30`` (or ``read=30``)."""
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"must be NAME=SECONDS, e.g. read_s=30, got {raw!r}")
    return (key if key.endswith("_s") else f"{key}_s"), positive_seconds(value)


def _share(raw: str) -> float:
    """``0.1`` or ``10%``: a share strictly between none and all."""
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < 1:
        raise typer.BadParameter(f"must be a fraction (0.1) or a percent (10%), got {raw!r}")
    return value


_kind = one_of("chat", "embedding", "tensor")

AdminKeyOption = Annotated[
    str | None,
    typer.Option(help="server.admin_key (default: $INTERLOCK_ADMIN_KEY)", show_default=False),
]
ActorOption = Annotated[
    str | None,
    typer.Option(
        help="who makes the change, for the audit log (default: $USER)", show_default=False
    ),
]
Name = Annotated[str, typer.Argument(metavar="NAME")]
Version = Annotated[str, typer.Argument(metavar="VERSION")]
# A version's facts (register and update).
EndpointOption = Annotated[
    str | None, typer.Option(metavar="URL", help="the upstream's base URL ('': none)")
]
UpstreamOption = Annotated[
    str | None, typer.Option(metavar="M", help="its name upstream, or an ONNX path")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", metavar="KEY=VALUE", help="(repeatable) a JSON value, else a string"),
]
TimeoutsOption = Annotated[
    list[str] | None,
    typer.Option("--timeout-s", metavar="K=S", help="(repeatable) e.g. read_s=30"),
]
TagOption = Annotated[list[str] | None, typer.Option("--tag", metavar="T", help="(repeatable)")]
DescriptionOption = Annotated[str | None, typer.Option(metavar="D")]


@dataclass(frozen=True, slots=True)
class Facts:
    """A version's facts as given on the command line (None: not given)."""

    endpoint: str | None = None
    upstream_model: str | None = None
    params: list[tuple[str, Any]] = field(default_factory=list)
    timeouts: list[tuple[str, float]] = field(default_factory=list)
    tags: list[str] | None = None
    description: str | None = None

    @classmethod
    def given(
        cls,
        endpoint: str | None,
        upstream_model: str | None,
        params: list[str] | None,
        timeouts: list[str] | None,
        tags: list[str] | None,
        description: str | None,
    ) -> Facts:
        return cls(
            endpoint,
            upstream_model,
            [_param(raw) for raw in params or []],
            [_timeout(raw) for raw in timeouts or []],
            tags,
            description,
        )


Command = Callable[["Gateway"], int]


def _on_gateway(
    url: str, admin_key: str | None, timeout: float, actor: str | None, command: Command
) -> int:
    """Run ``command`` with the admin key from the option or the environment."""

    def call() -> int:
        key = admin_key or os.environ.get("INTERLOCK_ADMIN_KEY")
        if not key:
            raise CliError(
                "no admin key: pass --admin-key, or set INTERLOCK_ADMIN_KEY (server.admin_key)",
                status=2,
            )
        from interlock.cli.gateway_http import Gateway

        actor_name = _actor(actor)
        headers = {"x-interlock-actor": actor_name} if actor_name else None
        return command(Gateway(url, key, timeout, headers))

    return reported(call)


def _actor(given: str | None) -> str | None:
    try:
        actor = given or os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):  # no name for this uid: the gateway records "admin"
        return None
    if not (actor.isascii() and actor.isprintable()):
        raise CliError(f"--actor must be printable ASCII (an HTTP header), got {actor!r}", status=2)
    return actor


# -- commands --------------------------------------------------------------------

_URL = "http://127.0.0.1:8080"


@models_app.command("list")
def listprint_versions(
    name: Annotated[str | None, typer.Option(help="only this model's versions")] = None,
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """Every registered version."""
    query = "?" + urlencode({"name": name}) if name else ""

    def command(gateway: Gateway) -> int:
        return print_versions(gateway.call("GET", "/admin/models" + query), json_out)

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("show")
def show(
    name: Name,
    version: Annotated[str | None, typer.Argument(metavar="VERSION")] = None,
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """A model's versions, or one version."""

    def command(gateway: Gateway) -> int:
        if version is None:
            page = gateway.call("GET", f"/admin/models/{quote(name, safe='')}")
            return print_versions(page, json_out)
        return print_version(gateway.call("GET", version_path(name, version)), json_out, "")

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("register")
def register_version(
    name: Annotated[str | None, typer.Argument(metavar="NAME")] = None,
    version: Annotated[str | None, typer.Argument(metavar="VERSION")] = None,
    file: Annotated[
        Path | None, typer.Option(metavar="SPEC", help="spec.yaml or spec.json")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(parser=_kind, metavar="chat|embedding|tensor", show_default=False),
    ] = None,
    provider: Annotated[
        str | None, typer.Option(metavar="P", help="simulator, openai, kserve, onnx, ...")
    ] = None,
    live: Annotated[bool, typer.Option("--live", help="serve it at once, as live")] = False,
    endpoint: EndpointOption = None,
    upstream_model: UpstreamOption = None,
    param: ParamOption = None,
    timeout_s: TimeoutsOption = None,
    tag: TagOption = None,
    description: DescriptionOption = None,
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """Register a version (in staging, or --live).

    From flags, or from a VersionSpec file (YAML or JSON; `show NAME VERSION
    --json` output too); flags override the file. --param values are JSON
    when they parse, else strings.
    """
    facts = Facts.given(endpoint, upstream_model, param, timeout_s, tag, description)

    def command(gateway: Gateway) -> int:
        spec = _spec_file(file) if file else {}
        given = {"name": name, "version": version, "kind": kind}
        spec.update({key: value for key, value in given.items() if value is not None})
        if provider is not None:
            spec["provider"] = provider
        spec.update(_changes(facts, spec))
        if live:
            spec["status"] = "live"
        missing = [f for f in ("name", "version", "kind", "provider") if not spec.get(f)]
        if missing:
            raise CliError(
                "register needs NAME VERSION --kind --provider, or --file; "
                f"missing: {', '.join(missing)}",
                status=2,
            )
        return print_version(gateway.call("POST", "/admin/models", spec), json_out, "Registered")

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("update")
def update(
    name: Name,
    version: Version,
    endpoint: EndpointOption = None,
    upstream_model: UpstreamOption = None,
    param: ParamOption = None,
    timeout_s: TimeoutsOption = None,
    tag: TagOption = None,
    description: DescriptionOption = None,
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """Change a version's facts.

    Changes only what is given. --param and --timeout-s merge into the
    version's own (KEY=null removes a param); --tag replaces the tags.
    """
    facts = Facts.given(endpoint, upstream_model, param, timeout_s, tag, description)

    def command(gateway: Gateway) -> int:
        path = version_path(name, version)
        current = gateway.call("GET", path) if facts.params or facts.timeouts else {}
        changes = _changes(facts, current)
        if not changes:
            raise CliError("nothing to change: see `interlock models update --help`", status=2)
        return print_version(gateway.call("PATCH", path, changes), json_out, "Updated")

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("delete")
def delete(
    name: Name,
    version: Version,
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """Remove a version (not the live one)."""

    def command(gateway: Gateway) -> int:
        deleted = gateway.call("DELETE", version_path(name, version))
        return print_version(deleted, json_out, "Deleted")

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("canary")
def canary(
    name: Name,
    version: Version,
    share: Annotated[float, typer.Option(parser=_share, help="0.1 or 10%")],
    sticky: Annotated[bool, typer.Option("--sticky", help="keep each caller on one side")] = False,
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """Send a share of traffic to a version."""

    def command(gateway: Gateway) -> int:
        body = {"share": share, "sticky": sticky}
        changed = gateway.call("POST", version_path(name, version, "/canary"), body)
        return print_version(changed, json_out, "Canary:")

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("promote")
def promote(
    name: Name,
    version: Version,
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """Make a version live."""

    def command(gateway: Gateway) -> int:
        promoted = gateway.call("POST", version_path(name, version, "/promote"), {})
        return print_version(promoted, json_out, "Promoted")

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("rollback")
def rollback(
    name: Name,
    reason: Annotated[str, typer.Option(help="recorded in the audit log")] = "",
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """Undo a model's canary, else its last promotion."""

    def command(gateway: Gateway) -> int:
        path = f"/admin/models/{quote(name, safe='')}/rollback"
        answer = gateway.call("POST", path, {"reason": reason})
        if json_out:
            print_json(answer)
            return 0
        serving = answer["serving"]
        print(f"{serving['name']}: version {serving['version']} now serves ({serving['status']})")
        return 0

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("audit")
def audit(
    target: Annotated[str | None, typer.Option(metavar="NAME@VERSION", help="or NAME")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="1 to 1000")] = 50,
    url: UrlOption = _URL,
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    admin_key: AdminKeyOption = None,
    actor: ActorOption = None,
) -> int:
    """The registry's changes, newest first."""
    # The registry's entries only: keys and chaos write to the same log.
    query = {"area": "registry", "limit": limit, **({"target": target} if target else {})}

    def command(gateway: Gateway) -> int:
        page = gateway.call("GET", "/admin/audit?" + urlencode(query))
        if json_out:
            print_json(page)
            return 0
        rows = (
            (str(e["id"]), when(e["ts"]), e["actor"], e["action"], e["target"], audit_summary(e))
            for e in page.get("data", [])
        )
        print_table(("ID", "TIME", "ACTOR", "ACTION", "TARGET", "SUMMARY"), rows)
        return 0

    return _on_gateway(url, admin_key, timeout, actor, command)


@models_app.command("export-minilm")
def export_minilm(
    out: Annotated[Path, typer.Option(metavar="DIR", help="where the ONNX model goes")],
) -> int:
    """Export the packaged MiniLM to ONNX (the injection-model extra)."""
    try:
        from interlock.engines.minilm_onnx import export_main  # needs optional extras
    except ImportError as exc:
        print(f"error: the export needs the injection-model extra: {exc}", file=sys.stderr)
        return 1
    status = export_main(["--out", str(out)])
    if status == 0:
        where = shlex.quote(str(out.expanduser().resolve()))
        print("Register it with:")
        print(
            "  interlock models register minilm 1 --kind embedding --provider onnx "
            f"--upstream-model {where}"
        )
    return status


def register(app: typer.Typer) -> None:
    app.add_typer(models_app)


# -- building bodies -------------------------------------------------------------


def _spec_file(path: Path) -> dict[str, Any]:
    """A VersionSpec from YAML or JSON; a version as `show --json` prints it
    loses what only the registry sets (it registers as a new version)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if not isinstance(spec, dict):
        raise CliError(f"{path}: must hold one mapping (name, version, kind, provider, ...)")
    if spec.get("object") == "model.version":
        for key in _SHOWN_ONLY:
            spec.pop(key, None)
    return spec


def _changes(facts: Facts, current: dict[str, Any]) -> dict[str, Any]:
    """The facts given as flags; params and timeouts merged into ``current``'s."""
    changes: dict[str, Any] = {}
    for fact in ("endpoint", "upstream_model"):
        if (value := getattr(facts, fact)) is not None:
            changes[fact] = value or None
    if facts.description is not None:
        changes["description"] = facts.description
    if facts.tags is not None:
        changes["tags"] = facts.tags
    for name, pairs in (("params", facts.params), ("timeouts", facts.timeouts)):
        if pairs:
            merged = dict(current.get(name) or {})
            for key, value in pairs:
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            changes[name] = merged
    return changes
