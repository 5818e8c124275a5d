"""How ``interlock models`` shows versions and audit entries: tables on a
terminal (plain columns when piped), or the API's JSON with ``--json``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from interlock.cli.output import note, print_json, print_table

__all__ = ["audit_summary", "print_version", "print_versions", "when"]

_FACTS = ("endpoint", "upstream_model", "params", "timeouts", "inputs", "outputs", "tags")


def audit_summary(entry: dict[str, Any]) -> str:
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


def print_version(version: dict[str, Any], json_out: bool, verb: str) -> int:
    if json_out:
        print_json(version)
    elif verb:
        share = f" ({_percent(version['traffic_share'])})" if version["status"] == "canary" else ""
        print(f"{verb} {version['name']}@{version['version']}: {version['status']}{share}")
    else:
        print_table(("FIELD", "VALUE"), _fields(version), header=False)
    return 0


def print_versions(page: dict[str, Any], json_out: bool) -> int:
    if json_out:
        print_json(page)
        return 0
    now = time.time()
    head = ("NAME", "VERSION", "KIND", "PROVIDER", "STATUS", "SHARE", "STICKY", "BY", "UPDATED")
    print_table(head, (_version_row(v, now) for v in page.get("data", [])))
    if not page.get("data"):
        note("No versions registered; add one with `interlock models register`.")
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
            text = when(value)
        elif key == "traffic_share":
            text = _percent(value)
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, dict | list):
            text = json.dumps(value) if value else ""
        else:
            text = "" if value is None else str(value)
        yield key.replace("_", " "), text or "-"


def _percent(share: float | None) -> str:
    return f"{share * 100:g}%" if share else "-"


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _ago(stamp: float, now: float) -> str:
    seconds = max(0.0, now - stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
