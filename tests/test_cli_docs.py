"""docs/cli.md keeps up with the CLI: every command has its ``--help`` block
there, and every command and option that help lists appears in that block."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from interlock.cli import main
from interlock.cli.app import command

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
_BLOCK = re.compile(r"```text\n\$ interlock(?P<path>[^\n]*?) --help\n(?P<body>.*?)```", re.S)
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _paths(group: typer.core.TyperGroup, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's path, groups included: (), ("keys",), ("keys", "create"), ..."""
    yield prefix
    ctx = group.make_context("interlock", [], resilient_parsing=True)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if isinstance(sub, typer.core.TyperGroup):
            yield from _paths(sub, (*prefix, name))
        else:
            yield (*prefix, name)


def _documented() -> dict[tuple[str, ...], str]:
    text = DOC.read_text(encoding="utf-8")
    return {tuple(m["path"].split()): m["body"] for m in _BLOCK.finditer(text)}


PATHS = list(_paths(command()))


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "interlock")
def test_every_command_and_option_in_the_help_is_documented(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path, "--help"]) == 0
    help_text = capsys.readouterr().out
    block = _documented().get(path)
    assert block is not None, f"docs/cli.md has no `interlock {' '.join(path)} --help` block"
    options = set(_OPTION.findall(help_text))
    assert "--help" in options
    missing = sorted(option for option in options if option not in _OPTION.findall(block))
    assert not missing, f"`interlock {' '.join(path)}`: {missing} not in docs/cli.md"
    commands = [p[-1] for p in PATHS if len(p) == len(path) + 1 and p[: len(path)] == path]
    for name in commands:
        assert re.search(rf"│ {re.escape(name)} ", help_text), f"{name} not in the help"
        assert re.search(rf"│ {re.escape(name)} ", block), f"{name} not in docs/cli.md"


def test_the_root_help_lists_every_command_with_one_line() -> None:
    top = [p[0] for p in PATHS if len(p) == 1]
    assert set(top) == {
        "serve",
        "worker",
        "check-config",
        "keys",
        "usage",
        "chaos",
        "models",
        "batch",
        "search",
    }
    block = _documented()[()]
    for name in top:
        (line,) = [line for line in block.splitlines() if line.startswith(f"│ {name} ")]
        assert len(line.strip("│ ").split(maxsplit=1)) == 2, f"{name} has no one-line help"
