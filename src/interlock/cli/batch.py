"""``interlock batch submit|status|list|cancel|results``: the OpenAI Batches
API of a running gateway, from a shell.

The gateway is ``--url`` (``$INTERLOCK_URL``, else http://127.0.0.1:8080),
the key ``--api-key`` (``$INTERLOCK_API_KEY``, else ``$INTERLOCK_DEV_KEY``,
the key ``interlock serve`` prints). Only the standard library speaks HTTP;
every call has ``--timeout``. A batch id, a table or ``--json`` goes to
stdout, notes and the progress bar (on a terminal) to stderr, so
``ID=$(interlock batch submit ...)`` works.

Exit status: 0 done (with ``--wait``: the batch completed); 1 the gateway
refused the call (its ``error.message`` is printed) or the batch failed,
expired or was cancelled; 2 no key, or the gateway cannot be reached;
130 Ctrl-C while waiting (the batch goes on).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO
from urllib.parse import quote

import typer

from interlock.cli.errors import CliError, reported
from interlock.cli.options import JsonOption, TimeoutOption, UrlOption, positive_seconds
from interlock.cli.output import note, print_json, print_table
from interlock.cli.progress import tracked

if TYPE_CHECKING:
    from interlock.cli.gateway_http import Gateway

__all__ = ["FINAL", "Gateway", "register"]

FINAL = frozenset({"completed", "failed", "expired", "cancelled"})
DEV_KEY_VAR = "INTERLOCK_DEV_KEY"  # as `interlock serve` names it


def batch_path(batch_id: str, action: str = "") -> str:
    return f"/v1/batches/{quote(batch_id, safe='')}{action}"


# -- arguments -------------------------------------------------------------------

batch_app = typer.Typer(
    name="batch", help="Submit and follow batches on a running gateway.", no_args_is_help=True
)

ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        help="default: $INTERLOCK_API_KEY, else $INTERLOCK_DEV_KEY (never shown)",
        show_default=False,
    ),
]
WaitOption = Annotated[bool, typer.Option("--wait", help="follow it until it finishes")]
PollOption = Annotated[float, typer.Option(parser=positive_seconds, help="seconds between polls")]
BatchId = Annotated[str, typer.Argument(metavar="ID")]
Command = Callable[["Gateway"], int]


def _metadata(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"must be KEY=VALUE, got {raw!r}")
    return key, value


def _on_gateway(url: str, api_key: str | None, timeout: float, command: Command) -> int:
    """Run ``command`` against the gateway with the key from the option or
    the environment; its exit status (see the module's docstring)."""

    def call() -> int:
        key = api_key or os.environ.get("INTERLOCK_API_KEY") or os.environ.get(DEV_KEY_VAR)
        if not key:
            raise CliError(
                "no API key: pass --api-key, or set INTERLOCK_API_KEY (or "
                f"{DEV_KEY_VAR}, the key `interlock serve` printed)",
                status=2,
            )
        from interlock.cli.gateway_http import Gateway

        return command(Gateway(url, key, timeout))

    return reported(call)


# -- commands --------------------------------------------------------------------


@batch_app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(metavar="FILE.jsonl")],
    endpoint: Annotated[str, typer.Option(help="the endpoint every line calls")] = (
        "/v1/chat/completions"
    ),
    metadata: Annotated[
        list[str] | None, typer.Option(metavar="KEY=VALUE", help="(repeatable)")
    ] = None,
    wait: WaitOption = False,
    poll: PollOption = 1.0,
    url: UrlOption = "http://127.0.0.1:8080",
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    api_key: ApiKeyOption = None,
) -> int:
    """Upload a JSONL file and start a batch on it; prints its id.

    Each line: {custom_id, method: POST, url, body}. The gateway checks every
    line at upload and names the first bad one.
    """
    pairs = [_metadata(raw) for raw in metadata or []]

    def command(gateway: Gateway) -> int:
        uploaded = gateway.upload(file, "batch")
        batch = gateway.post(
            "/v1/batches",
            {
                "input_file_id": uploaded["id"],
                "endpoint": endpoint,
                "completion_window": "24h",
                "metadata": dict(pairs) or None,
            },
        )
        note(f"Uploaded {file} ({uploaded['bytes']:,} bytes) as {uploaded['id']}.")
        if json_out and not wait:
            print_json(batch)
        elif not json_out:
            print(batch["id"], flush=True)
        if wait:
            return _follow(gateway, batch["id"], batch, json_out, poll)
        note(f"Follow it with: interlock batch status {batch['id']} --wait")
        return 0

    return _on_gateway(url, api_key, timeout, command)


@batch_app.command("status")
def status(
    batch_id: BatchId,
    wait: WaitOption = False,
    poll: PollOption = 1.0,
    url: UrlOption = "http://127.0.0.1:8080",
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    api_key: ApiKeyOption = None,
) -> int:
    """Show one batch (--wait: follow it until it finishes)."""

    def command(gateway: Gateway) -> int:
        if wait:
            return _follow(gateway, batch_id, None, json_out, poll)
        batch = gateway.get(batch_path(batch_id))
        if json_out:
            print_json(batch)
        else:
            print_table(("FIELD", "VALUE"), _batch_fields(batch), header=False)
        return 0

    return _on_gateway(url, api_key, timeout, command)


@batch_app.command("list")
def list_batches(
    limit: Annotated[int, typer.Option(metavar="N", help="1 to 100")] = 20,
    url: UrlOption = "http://127.0.0.1:8080",
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    api_key: ApiKeyOption = None,
) -> int:
    """This key's batches, newest first."""

    def command(gateway: Gateway) -> int:
        page = gateway.get(f"/v1/batches?limit={limit}")
        if json_out:
            print_json(page)
            return 0
        head = ("ID", "STATUS", "ENDPOINT", "DONE/FAILED/TOTAL", "CREATED")
        rows = (
            (
                batch["id"],
                batch["status"],
                batch["endpoint"],
                "/".join(str(n) for n in _counts(batch)),
                _time(batch["created_at"]),
            )
            for batch in page.get("data", [])
        )
        print_table(head, rows)
        if page.get("has_more"):
            note("More batches exist; raise --limit (at most 100) to see them.")
        return 0

    return _on_gateway(url, api_key, timeout, command)


@batch_app.command("cancel")
def cancel(
    batch_id: BatchId,
    url: UrlOption = "http://127.0.0.1:8080",
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    api_key: ApiKeyOption = None,
) -> int:
    """Stop a batch; work already done is kept."""

    def command(gateway: Gateway) -> int:
        batch = gateway.post(batch_path(batch_id, "/cancel"))
        if json_out:
            print_json(batch)
        else:
            print(f"{batch['id']}: {batch['status']}")
            note("Requests already done stay in its output and error files.")
        return 0

    return _on_gateway(url, api_key, timeout, command)


@batch_app.command("results")
def results(
    batch_id: BatchId,
    output: Annotated[Path | None, typer.Option(metavar="FILE", help="default: stdout")] = None,
    errors: Annotated[Path | None, typer.Option(metavar="FILE", help="default: stderr")] = None,
    url: UrlOption = "http://127.0.0.1:8080",
    timeout: TimeoutOption = 30.0,
    json_out: JsonOption = False,
    api_key: ApiKeyOption = None,
) -> int:
    """Download a finished batch's output (and error) lines.

    The output lines go to --output, else stdout; the error lines (failed
    requests) to --errors, else stderr.
    """

    def command(gateway: Gateway) -> int:
        batch = gateway.get(batch_path(batch_id))
        if batch["status"] not in FINAL:
            raise CliError(
                f"{batch['id']} is {batch['status']}; its results come when it finishes "
                f"(interlock batch status {batch['id']} --wait)"
            )
        for file_id, path, stream, what in (
            (batch.get("output_file_id"), output, sys.stdout, "output"),
            (batch.get("error_file_id"), errors, sys.stderr, "error"),
        ):
            lines: Iterator[bytes] = gateway.lines(file_id) if file_id else iter(())
            count = _save(lines, path, stream)
            if file_id or path is not None:
                note(f"{what} lines: {count}" + (f" (written to {path})" if path else ""))
        if batch.get("errors"):
            _print_errors(batch, sys.stderr)
        return 0

    return _on_gateway(url, api_key, timeout, command)


def register(app: typer.Typer) -> None:
    app.add_typer(batch_app)


def _save(lines: Iterator[bytes], path: Path | None, stream: TextIO) -> int:
    """Write ``lines`` to ``path``, else to ``stream``; how many there were."""
    count = 0
    if path is None:
        for count, line in enumerate(lines, start=1):  # noqa: B007
            stream.write(line.decode())
        stream.flush()
        return count
    try:
        with path.open("wb") as file:
            for count, line in enumerate(lines, start=1):  # noqa: B007
                file.write(line)
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    return count


def _follow(
    gateway: Gateway, batch_id: str, batch: dict[str, Any] | None, json_out: bool, poll_s: float
) -> int:
    """Poll until the batch finishes, then print its summary; 0 if it completed."""
    try:
        note(f"Waiting for {batch_id}; Ctrl-C stops waiting, not the batch.")
        batch = _wait(gateway, batch or gateway.get(batch_path(batch_id)), poll_s)
    except KeyboardInterrupt:
        note(
            f"Stopped waiting; {batch_id} goes on at the gateway. "
            f"Follow it again with: interlock batch status {batch_id} --wait"
        )
        return 130
    if json_out:
        print_json(batch)
    else:
        _summary(batch)
    return 0 if batch["status"] == "completed" else 1


def _wait(gateway: Gateway, batch: dict[str, Any], poll_s: float) -> dict[str, Any]:
    with tracked(batch["id"]) as progress:
        while True:
            completed, failed, total = _counts(batch)
            progress.update(completed + failed, total or None, batch["status"])
            if batch["status"] in FINAL:
                return batch
            time.sleep(poll_s)
            batch = gateway.get(batch_path(batch["id"]))


# -- output ----------------------------------------------------------------------


def _time(stamp: int | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _counts(batch: dict[str, Any]) -> tuple[int, int, int]:
    """Completed, failed and total requests."""
    counts = batch.get("request_counts") or {}
    return counts.get("completed", 0), counts.get("failed", 0), counts.get("total", 0)


def _batch_fields(batch: dict[str, Any]) -> list[tuple[str, str]]:
    """One batch as (field, value) rows: those with a value."""
    completed, failed, total = _counts(batch)
    rows = [
        ("id", batch["id"]),
        ("status", batch["status"]),
        ("endpoint", batch["endpoint"]),
        ("requests", f"{completed} completed, {failed} failed, {total} total"),
        ("input file", batch.get("input_file_id")),
        ("output file", batch.get("output_file_id")),
        ("error file", batch.get("error_file_id")),
        *(  # created, in progress, expires, ..., cancelled: those that happened
            (name.removesuffix("_at").replace("_", " "), _time(value))
            for name, value in batch.items()
            if name.endswith("_at") and isinstance(value, int)
        ),
        ("metadata", ", ".join(f"{k}={v}" for k, v in (batch.get("metadata") or {}).items())),
        *(("error", line) for line in _error_lines(batch)),
    ]
    return [(name, value) for name, value in rows if value]


def _error_lines(batch: dict[str, Any]) -> list[str]:
    """The batch's own errors (e.g. a line for another endpoint), one a line."""
    found = (batch.get("errors") or {}).get("data") or []
    return [
        (f"line {e['line']}: " if e.get("line") is not None else "")
        + f"{e.get('code') or 'error'}: {e.get('message', '')}"
        for e in found
    ]


def _print_errors(batch: dict[str, Any], stream: TextIO) -> None:
    for line in _error_lines(batch):
        print(f"  {line}", file=stream)


def _summary(batch: dict[str, Any]) -> None:
    completed, failed, total = _counts(batch)
    print(f"{batch['id']} {batch['status']}: {completed} completed, {failed} failed, {total} total")
    _print_errors(batch, sys.stdout)
    if batch.get("output_file_id") or batch.get("error_file_id"):
        errors = " --errors errors.jsonl" if batch.get("error_file_id") else ""
        print(f"Results: interlock batch results {batch['id']} --output out.jsonl{errors}")
