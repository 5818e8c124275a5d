"""``interlock batch submit|status|list|cancel|results``: the OpenAI Batches
API of a running gateway, from a shell.

The gateway is ``--url`` (``$INTERLOCK_URL``, else http://127.0.0.1:8080),
the key ``--api-key`` (``$INTERLOCK_API_KEY``, else ``$INTERLOCK_DEV_KEY``,
the key ``interlock serve`` prints). Only the standard library speaks HTTP;
every call has ``--timeout``. A batch id, a table or ``--json`` goes to
stdout, notes and the progress bar to stderr, so ``ID=$(interlock batch
submit ...)`` works.

Exit status: 0 done (with ``--wait``: the batch completed); 1 the gateway
refused the call (its ``error.message`` is printed) or the batch failed,
expired or was cancelled; 2 no key, or the gateway cannot be reached;
130 Ctrl-C while waiting (the batch goes on).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from interlock.cli_options import add_gateway_options, positive_seconds

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["FINAL", "CliError", "Gateway", "add_parsers", "main"]

FINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_CHUNK = 64 * 1024
DEV_KEY_VAR = "INTERLOCK_DEV_KEY"  # as interlock.cli names it (no import: no cycle)


class CliError(Exception):
    """A problem to report in one line; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- HTTP ------------------------------------------------------------------------


class Gateway:
    """The Files and Batches APIs over ``urllib``. Foreign exceptions become
    ``CliError`` here and nowhere else: a refusal exits 1, no connection 2."""

    def __init__(self, url: str, api_key: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s

    def get(self, path: str) -> dict[str, Any]:
        return self._json(self._request("GET", path))

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        return self._json(self._request("POST", path, data, {"content-type": "application/json"}))

    def upload(self, path: Path, purpose: str) -> dict[str, Any]:
        """``POST /v1/files``: multipart, the file streamed from disk."""
        boundary = "interlock-" + secrets.token_hex(16)
        name = path.name.replace('"', "%22").replace("\r", "").replace("\n", "")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
            f"{purpose}\r\n--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        try:
            file = path.open("rb")
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror or exc}") from None
        with file:
            size = os.fstat(file.fileno()).st_size
            body = itertools.chain([head], iter(lambda: file.read(_CHUNK), b""), [tail])
            headers = {
                "content-type": f"multipart/form-data; boundary={boundary}",
                "content-length": str(len(head) + size + len(tail)),
            }
            return self._json(self._request("POST", "/v1/files", body, headers))

    def lines(self, file_id: str) -> Iterator[bytes]:
        """A file's content, line by line as it arrives; the request is made
        now, so a refusal comes before anything is written."""
        return self._lines(self._request("GET", f"/v1/files/{quote(file_id, safe='')}/content"))

    def _lines(self, response: http.client.HTTPResponse) -> Iterator[bytes]:
        with response:
            while line := self._read(response.readline):
                yield line

    def _request(
        self,
        method: str,
        path: str,
        data: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        headers = {"authorization": f"Bearer {self._api_key}", **(headers or {})}
        try:
            request = urllib.request.Request(self.url + path, data, headers, method=method)
            response: http.client.HTTPResponse = urllib.request.urlopen(
                request, timeout=self._timeout_s
            )
        except urllib.error.HTTPError as exc:
            with exc:  # its body is the open response
                raise CliError(f"{_error_message(exc)} (HTTP {exc.code})") from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: a bad --url
            raise self._unreachable(exc) from None
        return response

    def _json(self, response: http.client.HTTPResponse) -> dict[str, Any]:
        with response:
            raw = self._read(response.read)
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise CliError(f"bad answer from the gateway at {self.url}: {raw[:200]!r}")
        return answer

    def _read(self, read: Callable[[], bytes]) -> bytes:
        try:
            return read()
        except (OSError, http.client.HTTPException) as exc:
            raise CliError(f"the gateway at {self.url} broke off its answer: {exc!r}") from None

    def _unreachable(self, reason: object) -> CliError:
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused; is `interlock serve` running there? (--url, $INTERLOCK_URL)"
        elif isinstance(reason, TimeoutError):
            why = f"no answer within {self._timeout_s:g} s (--timeout)"
        else:
            why = str(reason)
        return CliError(f"cannot reach the gateway at {self.url}: {why}", status=2)


def _batch_path(batch_id: str, action: str = "") -> str:
    return f"/v1/batches/{quote(batch_id, safe='')}{action}"


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The OpenAI-shaped ``error.message`` of a refusal, else its reason."""
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        return str(exc.reason)


# -- arguments -------------------------------------------------------------------


def _metadata(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {raw!r}")
    return key, value


def _parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options every command has, and those of the commands that wait."""
    common = argparse.ArgumentParser(add_help=False)
    add_gateway_options(common)
    common.add_argument(
        "--api-key", help="default: $INTERLOCK_API_KEY, else $INTERLOCK_DEV_KEY (never shown)"
    )
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="follow it until it finishes")
    waiting.add_argument("--poll", type=positive_seconds, default=1.0, help="seconds between polls")
    return common, waiting


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``batch submit|status|list|cancel|results``."""
    common, waiting = _parents()
    batch = commands.add_parser("batch", help="submit and follow batches on a running gateway")
    actions = batch.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    submit = actions.add_parser(
        "submit",
        parents=[common, waiting],
        help="upload a JSONL file and start a batch on it; prints its id",
        description="Each line: {custom_id, method: POST, url, body}. The gateway checks "
        "every line at upload and names the first bad one.",
    )
    submit.add_argument("file", metavar="FILE.jsonl", type=Path)
    submit.add_argument("--endpoint", default="/v1/chat/completions", help="(default: %(default)s)")
    submit.add_argument(
        "--metadata", type=_metadata, action="append", default=[], metavar="KEY=VALUE"
    )
    status = actions.add_parser("status", parents=[common, waiting], help="show one batch")
    status.add_argument("batch_id", metavar="ID")
    listing = actions.add_parser("list", parents=[common], help="this key's batches, newest first")
    listing.add_argument("--limit", type=int, default=20, metavar="N", help="1 to 100 (20)")
    cancel = actions.add_parser("cancel", parents=[common], help="stop a batch; done work is kept")
    cancel.add_argument("batch_id", metavar="ID")
    results = actions.add_parser(
        "results",
        parents=[common],
        help="download a finished batch's output (and error) lines",
        description="The output lines go to --output, else stdout; the error lines "
        "(failed requests) to --errors, else stderr.",
    )
    results.add_argument("batch_id", metavar="ID")
    results.add_argument("--output", type=Path, metavar="FILE")
    results.add_argument("--errors", type=Path, metavar="FILE")


# -- commands --------------------------------------------------------------------


def _submit(gateway: Gateway, args: argparse.Namespace) -> int:
    uploaded = gateway.upload(args.file, "batch")
    batch = gateway.post(
        "/v1/batches",
        {
            "input_file_id": uploaded["id"],
            "endpoint": args.endpoint,
            "completion_window": "24h",
            "metadata": dict(args.metadata) or None,
        },
    )
    _note(f"Uploaded {args.file} ({uploaded['bytes']:,} bytes) as {uploaded['id']}.")
    if args.json and not args.wait:
        _print_json(batch)
    elif not args.json:
        print(batch["id"], flush=True)
    if args.wait:
        return _follow(gateway, batch["id"], batch, args.json, args.poll)
    _note(f"Follow it with: interlock batch status {batch['id']} --wait")
    return 0


def _status(gateway: Gateway, args: argparse.Namespace) -> int:
    if args.wait:
        return _follow(gateway, args.batch_id, None, args.json, args.poll)
    batch = gateway.get(_batch_path(args.batch_id))
    if args.json:
        _print_json(batch)
    else:
        _console().print(_batch_table(batch))
    return 0


def _list(gateway: Gateway, args: argparse.Namespace) -> int:
    page = gateway.get(f"/v1/batches?limit={args.limit}")
    if args.json:
        _print_json(page)
        return 0
    from rich.table import Table

    table = Table(
        "ID", "STATUS", "ENDPOINT", "DONE/FAILED/TOTAL", "CREATED", box=None, pad_edge=False
    )
    for batch in page.get("data", []):
        table.add_row(
            batch["id"],
            batch["status"],
            batch["endpoint"],
            "/".join(str(n) for n in _counts(batch)),
            _time(batch["created_at"]),
        )
    _console().print(table)
    if page.get("has_more"):
        _note("More batches exist; raise --limit (at most 100) to see them.")
    return 0


def _cancel(gateway: Gateway, args: argparse.Namespace) -> int:
    batch = gateway.post(_batch_path(args.batch_id, "/cancel"))
    if args.json:
        _print_json(batch)
    else:
        print(f"{batch['id']}: {batch['status']}")
        _note("Requests already done stay in its output and error files.")
    return 0


def _results(gateway: Gateway, args: argparse.Namespace) -> int:
    batch = gateway.get(_batch_path(args.batch_id))
    if batch["status"] not in FINAL:
        raise CliError(
            f"{batch['id']} is {batch['status']}; its results come when it finishes "
            f"(interlock batch status {batch['id']} --wait)"
        )
    for file_id, path, stream, what in (
        (batch.get("output_file_id"), args.output, sys.stdout, "output"),
        (batch.get("error_file_id"), args.errors, sys.stderr, "error"),
    ):
        lines: Iterator[bytes] = gateway.lines(file_id) if file_id else iter(())
        count = _save(lines, path, stream)
        if file_id or path is not None:
            _note(f"{what} lines: {count}" + (f" (written to {path})" if path else ""))
    if batch.get("errors"):
        _print_errors(batch, sys.stderr)
    return 0


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
        _note(f"Waiting for {batch_id}; Ctrl-C stops waiting, not the batch.")
        batch = _wait(gateway, batch or gateway.get(_batch_path(batch_id)), poll_s)
    except KeyboardInterrupt:
        _note(
            f"Stopped waiting; {batch_id} goes on at the gateway. "
            f"Follow it again with: interlock batch status {batch_id} --wait"
        )
        return 130
    if json_out:
        _print_json(batch)
    else:
        _summary(batch)
    return 0 if batch["status"] == "completed" else 1


def _wait(gateway: Gateway, batch: dict[str, Any], poll_s: float) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True, highlight=False)) as progress:
        task = progress.add_task(batch["id"], total=None, status="")
        while True:
            completed, failed, total = _counts(batch)
            progress.update(
                task, total=total or None, completed=completed + failed, status=batch["status"]
            )
            if batch["status"] in FINAL:
                return batch
            time.sleep(poll_s)
            batch = gateway.get(_batch_path(batch["id"]))


# -- output ----------------------------------------------------------------------


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _print_json(value: dict[str, Any]) -> None:
    print(json.dumps(value, indent=2))


def _console() -> Console:
    from rich.console import Console

    # Markup off: metadata values are the user's text, not rich markup.
    console = Console(markup=False, highlight=False, emoji=False)
    if not console.is_terminal:
        console.width = 200  # piped: whole rows, not folded at 80 columns
    return console


def _time(stamp: int | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _counts(batch: dict[str, Any]) -> tuple[int, int, int]:
    """Completed, failed and total requests."""
    counts = batch.get("request_counts") or {}
    return counts.get("completed", 0), counts.get("failed", 0), counts.get("total", 0)


def _batch_table(batch: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
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
    for name, value in rows:
        if value:
            table.add_row(name, value)
    return table


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


# -- entry point -----------------------------------------------------------------

_COMMANDS: dict[str, Callable[[Gateway, argparse.Namespace], int]] = {
    "submit": _submit,
    "status": _status,
    "list": _list,
    "cancel": _cancel,
    "results": _results,
}


def main(args: argparse.Namespace) -> int:
    """Run a parsed ``batch`` command; its exit status (see the module's docstring)."""
    key = args.api_key or os.environ.get("INTERLOCK_API_KEY") or os.environ.get(DEV_KEY_VAR)
    try:
        if not key:
            raise CliError(
                "no API key: pass --api-key, or set INTERLOCK_API_KEY (or "
                f"{DEV_KEY_VAR}, the key `interlock serve` printed)",
                status=2,
            )
        return _COMMANDS[args.batch_command](Gateway(args.url, key, args.timeout), args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        _note("\ninterrupted")
        return 130
