"""HTML pages from the console's Jinja templates, autoescaped: whatever a
key name, a model id or an error message holds is shown as text."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["render"]


@cache
def _environment() -> Environment:
    # Built at the first page, not at import: the gateway's start pays nothing.
    environment = Environment(
        loader=PackageLoader("interlock.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["usd"] = _usd
    environment.filters["number"] = _number
    environment.filters["percent"] = _percent
    return environment


def render(template: str, **context: Any) -> bytes:
    return _environment().get_template(template).render(**context).encode()


def _usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"
