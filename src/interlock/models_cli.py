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

import argparse
import getpass
import http.client
import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from interlock.batch_cli import CliError
from interlock.cli_options import add_gateway_options, positive_seconds

__all__ = ["AdminGateway", "add_parsers", "main"]

_FACTS = ("endpoint", "upstream_model", "params", "timeouts", "inputs", "outputs", "tags")
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


class AdminGateway:
    """The registry's admin API over ``urllib``. Foreign exceptions become
    ``CliError`` here and nowhere else: a refusal exits 1, no connection 2."""

    def __init__(self, url: str, admin_key: str, timeout_s: float, actor: str | None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"authorization": f"Bearer {admin_key}"}
        if actor:
            self._headers["x-interlock-actor"] = actor
        self._timeout_s = timeout_s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request; its answer, a JSON object."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body, default=str).encode()  # default: YAML's dates
            headers["content-type"] = "application/json"
        try:
            request = urllib.request.Request(self.url + path, data, headers, method=method)
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                raw: bytes = response.read()
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: a bad --url
            raise self._classified(exc) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise CliError(f"bad answer from the gateway at {self.url}: {raw[:200]!r}")
        return answer

    def _classified(self, exc: Exception) -> CliError:
        """The gateway's refusal (exit 1, its ``error.message``), else no gateway (2)."""
        if isinstance(exc, urllib.error.HTTPError):  # its body is the open response
            with exc:
                return CliError(f"{_refusal(exc)} (HTTP {exc.code})")
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            reason = f"no answer within {self._timeout_s:g} s (--timeout)"
        return CliError(f"cannot reach the gateway at {self.url}: {reason}", status=2)


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(exc.read())
    except (OSError, ValueError, http.client.HTTPException):
        answer = None
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(exc.reason)


def _version_path(name: str, version: str, action: str = "") -> str:
    return f"/admin/models/{quote(name, safe='')}/versions/{quote(version, safe='')}{action}"


# -- arguments -------------------------------------------------------------------


def _param(raw: str) -> tuple[str, Any]:
    """``KEY=VALUE``; the value as JSON when it parses (``null`` removes the key)."""
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {raw!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _timeout(raw: str) -> tuple[str, float]:
    """``read_s=30`` (or ``read=30``)."""
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be NAME=SECONDS, e.g. read_s=30, got {raw!r}")
    return (key if key.endswith("_s") else f"{key}_s"), positive_seconds(value)


def _share(raw: str) -> float:
    """``0.1`` or ``10%``: a share strictly between none and all."""
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a fraction (0.1) or a percent (10%), got {raw!r}"
        )
    return value


def _parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options every HTTP command has, and a version's facts."""
    common = argparse.ArgumentParser(add_help=False)
    add_gateway_options(common)
    common.add_argument("--admin-key", help="server.admin_key (default: $INTERLOCK_ADMIN_KEY)")
    common.add_argument("--actor", help="who makes the change, for the audit log (default: $USER)")
    facts = argparse.ArgumentParser(add_help=False)
    facts.add_argument("--endpoint", metavar="URL", help="the upstream's base URL ('': none)")
    facts.add_argument("--upstream-model", metavar="M", help="its name upstream, or an ONNX path")
    facts.add_argument(
        "--param", dest="params", type=_param, action="append", default=[], metavar="KEY=VALUE"
    )
    facts.add_argument(
        "--timeout-s", dest="timeouts", type=_timeout, action="append", default=[], metavar="K=S"
    )
    facts.add_argument("--tag", dest="tags", action="append", metavar="T", help="(repeatable)")
    facts.add_argument("--description", metavar="D")
    return common, facts


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``models list|show|register|update|delete|canary|promote|rollback|audit|export-minilm``."""
    common, facts = _parents()
    models = commands.add_parser("models", help="manage the model registry of a running gateway")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="every registered version")
    listing.add_argument("--name", help="only this model's versions")
    show = actions.add_parser("show", parents=[common], help="a model's versions, or one version")
    show.add_argument("name", metavar="NAME")
    show.add_argument("version", metavar="VERSION", nargs="?")
    register = actions.add_parser(
        "register",
        parents=[common, facts],
        help="register a version (in staging, or --live)",
        description="From flags, or from a VersionSpec file (YAML or JSON; `show NAME VERSION "
        "--json` output too); flags override the file. --param values are JSON when they "
        "parse, else strings.",
    )
    register.add_argument("name", metavar="NAME", nargs="?")
    register.add_argument("version", metavar="VERSION", nargs="?")
    register.add_argument("--file", type=Path, metavar="SPEC", help="spec.yaml or spec.json")
    register.add_argument("--kind", choices=("chat", "embedding", "tensor"))
    register.add_argument("--provider", metavar="P", help="simulator, openai, kserve, onnx, ...")
    register.add_argument("--live", action="store_true", help="serve it at once, as live")
    update = actions.add_parser(
        "update",
        parents=[common, facts],
        help="change a version's facts",
        description="Changes only what is given. --param and --timeout-s merge into the "
        "version's own (KEY=null removes a param); --tag replaces the tags.",
    )
    delete = actions.add_parser("delete", parents=[common], help="remove a version (not live)")
    for parser in (update, delete):
        parser.add_argument("name", metavar="NAME")
        parser.add_argument("version", metavar="VERSION")
    _add_life_cycle(actions, common)
    export = actions.add_parser(
        "export-minilm", help="export the packaged MiniLM to ONNX (the injection-model extra)"
    )
    export.add_argument("--out", required=True, type=Path, metavar="DIR")


def _add_life_cycle(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """``canary``, ``promote``, ``rollback`` and ``audit``."""
    canary = actions.add_parser("canary", parents=[common], help="send a share of traffic to it")
    canary.add_argument("--share", type=_share, required=True, help="0.1 or 10%%")
    canary.add_argument("--sticky", action="store_true", help="keep each caller on one side")
    promote = actions.add_parser("promote", parents=[common], help="make a version live")
    for parser in (canary, promote):
        parser.add_argument("name", metavar="NAME")
        parser.add_argument("version", metavar="VERSION")
    rollback = actions.add_parser(
        "rollback", parents=[common], help="undo a model's canary, else its last promotion"
    )
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--reason", default="", help="recorded in the audit log")
    audit = actions.add_parser(
        "audit", parents=[common], help="the registry's changes, newest first"
    )
    audit.add_argument("--target", metavar="NAME[@VERSION]")
    audit.add_argument("--limit", type=int, default=50, metavar="N", help="1 to 1000 (50)")


# -- commands --------------------------------------------------------------------


def _list(gateway: AdminGateway, args: argparse.Namespace) -> int:
    query = "?" + urlencode({"name": args.name}) if args.name else ""
    return _versions(gateway.call("GET", "/admin/models" + query), args.json)


def _show(gateway: AdminGateway, args: argparse.Namespace) -> int:
    if args.version is None:
        return _versions(
            gateway.call("GET", f"/admin/models/{quote(args.name, safe='')}"), args.json
        )
    return _done(gateway.call("GET", _version_path(args.name, args.version)), args, "")


def _register(gateway: AdminGateway, args: argparse.Namespace) -> int:
    spec = _spec_file(args.file) if args.file else {}
    given = {"name": args.name, "version": args.version, "kind": args.kind}
    spec.update({key: value for key, value in given.items() if value is not None})
    if args.provider is not None:
        spec["provider"] = args.provider
    spec.update(_changes(args, spec))
    if args.live:
        spec["status"] = "live"
    missing = [f for f in ("name", "version", "kind", "provider") if not spec.get(f)]
    if missing:
        raise CliError(
            "register needs NAME VERSION --kind --provider, or --file; "
            f"missing: {', '.join(missing)}",
            status=2,
        )
    return _done(gateway.call("POST", "/admin/models", spec), args, "Registered")


def _update(gateway: AdminGateway, args: argparse.Namespace) -> int:
    path = _version_path(args.name, args.version)
    current = gateway.call("GET", path) if args.params or args.timeouts else {}
    changes = _changes(args, current)
    if not changes:
        raise CliError("nothing to change: see `interlock models update --help`", status=2)
    return _done(gateway.call("PATCH", path, changes), args, "Updated")


def _delete(gateway: AdminGateway, args: argparse.Namespace) -> int:
    deleted = gateway.call("DELETE", _version_path(args.name, args.version))
    return _done(deleted, args, "Deleted")


def _canary(gateway: AdminGateway, args: argparse.Namespace) -> int:
    body = {"share": args.share, "sticky": args.sticky}
    changed = gateway.call("POST", _version_path(args.name, args.version, "/canary"), body)
    return _done(changed, args, "Canary:")


def _promote(gateway: AdminGateway, args: argparse.Namespace) -> int:
    promoted = gateway.call("POST", _version_path(args.name, args.version, "/promote"), {})
    return _done(promoted, args, "Promoted")


def _rollback(gateway: AdminGateway, args: argparse.Namespace) -> int:
    path = f"/admin/models/{quote(args.name, safe='')}/rollback"
    answer = gateway.call("POST", path, {"reason": args.reason})
    if args.json:
        _print_json(answer)
        return 0
    serving = answer["serving"]
    print(f"{serving['name']}: version {serving['version']} now serves ({serving['status']})")
    return 0


def _audit(gateway: AdminGateway, args: argparse.Namespace) -> int:
    query = {"limit": args.limit, **({"target": args.target} if args.target else {})}
    page = gateway.call("GET", "/admin/audit?" + urlencode(query))
    if args.json:
        _print_json(page)
        return 0
    rows = (
        (str(e["id"]), _when(e["ts"]), e["actor"], e["action"], e["target"], _audit_summary(e))
        for e in page.get("data", [])
    )
    _print_table(("ID", "TIME", "ACTOR", "ACTION", "TARGET", "SUMMARY"), rows)
    return 0


def _export_minilm(out: Path) -> int:
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


def _changes(args: argparse.Namespace, current: dict[str, Any]) -> dict[str, Any]:
    """The facts given as flags; params and timeouts merged into ``current``'s."""
    changes: dict[str, Any] = {}
    for field in ("endpoint", "upstream_model"):
        if (value := getattr(args, field)) is not None:
            changes[field] = value or None
    if args.description is not None:
        changes["description"] = args.description
    if args.tags is not None:
        changes["tags"] = args.tags
    for field, pairs in (("params", args.params), ("timeouts", args.timeouts)):
        if pairs:
            merged = dict(current.get(field) or {})
            for key, value in pairs:
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            changes[field] = merged
    return changes


# -- output ----------------------------------------------------------------------


def _audit_summary(entry: dict[str, Any]) -> str:
    """One audit entry in a line: the status change, share, facts changed,
    versions retired, reason."""
    detail = entry.get("detail") or {}
    before, after = detail.get("before") or {}, detail.get("after") or {}
    parts = []
    if before.get("status") != after.get("status"):
        parts.append(f"{before.get('status', 'none')} -> {after.get('status', 'none')}")
    if after.get("status") == "canary":
        parts.append(f"share {_percent(after.get('traffic_share'))}")
        if after.get("sticky"):
            parts.append("sticky")
    changed = [f for f in (*_FACTS, "description") if before and after and before[f] != after[f]]
    if changed:
        parts.append("changed " + ", ".join(changed))
    if detail.get("retired"):
        parts.append("retired " + ", ".join(detail["retired"]))
    if detail.get("reason"):
        parts.append(f"reason: {detail['reason']}")
    return "; ".join(parts)


def _done(version: dict[str, Any], args: argparse.Namespace, verb: str) -> int:
    if args.json:
        _print_json(version)
    elif verb:
        share = f" ({_percent(version['traffic_share'])})" if version["status"] == "canary" else ""
        print(f"{verb} {version['name']}@{version['version']}: {version['status']}{share}")
    else:
        _print_table(("FIELD", "VALUE"), _fields(version), header=False)
    return 0


def _versions(page: dict[str, Any], json_out: bool) -> int:
    if json_out:
        _print_json(page)
        return 0
    now = time.time()
    head = ("NAME", "VERSION", "KIND", "PROVIDER", "STATUS", "SHARE", "STICKY", "BY", "UPDATED")
    _print_table(head, (_version_row(v, now) for v in page.get("data", [])))
    if not page.get("data"):
        print("No versions registered; add one with `interlock models register`.", file=sys.stderr)
    return 0


def _version_row(v: dict[str, Any], now: float) -> tuple[str, ...]:
    facts = (v["name"], v["version"], v["kind"], v["provider"], v["status"])
    share, sticky = _percent(v["traffic_share"]), "yes" if v["sticky"] else "-"
    return (*facts, share, sticky, v["updated_by"], _ago(v["updated_at"], now))


def _fields(version: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """Every field of a version, in the API's order, as text."""
    for key, value in version.items():
        if key == "object":
            continue
        if key.endswith("_at"):
            text = _when(value)
        elif key == "traffic_share":
            text = _percent(value)
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, dict | list):
            text = json.dumps(value) if value else ""
        else:
            text = "" if value is None else str(value)
        yield key.replace("_", " "), text or "-"


def _print_table(
    head: tuple[str, ...], rows: Iterable[tuple[str, ...]], *, header: bool = True
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*head, show_header=header, box=None, pad_edge=False)
    for row in rows:
        table.add_row(*row)
    # Markup off: names and descriptions are the user's text, not rich markup.
    console = Console(markup=False, highlight=False, emoji=False)
    if not console.is_terminal:
        console.width = 200  # piped: whole rows, not folded at 80 columns
    console.print(table)


def _print_json(value: dict[str, Any]) -> None:
    print(json.dumps(value, indent=2))


def _percent(share: float | None) -> str:
    return f"{share * 100:g}%" if share else "-"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _ago(stamp: float, now: float) -> str:
    seconds = max(0.0, now - stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


# -- entry point -----------------------------------------------------------------

_COMMANDS: dict[str, Callable[[AdminGateway, argparse.Namespace], int]] = {
    "list": _list,
    "show": _show,
    "register": _register,
    "update": _update,
    "delete": _delete,
    "canary": _canary,
    "promote": _promote,
    "rollback": _rollback,
    "audit": _audit,
}


def _actor(given: str | None) -> str | None:
    try:
        actor = given or os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):  # no name for this uid: the gateway records "admin"
        return None
    if not (actor.isascii() and actor.isprintable()):
        raise CliError(f"--actor must be printable ASCII (an HTTP header), got {actor!r}", status=2)
    return actor


def main(args: argparse.Namespace) -> int:
    """Run a parsed ``models`` command; its exit status (see the module's docstring)."""
    if args.models_command == "export-minilm":
        return _export_minilm(args.out)
    key = args.admin_key or os.environ.get("INTERLOCK_ADMIN_KEY")
    try:
        if not key:
            raise CliError(
                "no admin key: pass --admin-key, or set INTERLOCK_ADMIN_KEY (server.admin_key)",
                status=2,
            )
        gateway = AdminGateway(args.url, key, args.timeout, _actor(args.actor))
        return _COMMANDS[args.models_command](gateway, args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
