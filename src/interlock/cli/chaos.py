"""``interlock chaos``: run a named fault drill against a live gateway.

The drill reads the gateway's chaos settings (``GET /admin/chaos``), puts
one rule on the chosen deployment (``PUT /admin/chaos``), waits, and puts
the previous settings back, also when the drill ends early (Ctrl-C) or
fails. Only the standard library speaks HTTP, and every call has a timeout.

Exit codes: 0 the drill ran (or was ended early with Ctrl-C) and the
settings were restored; 1 the gateway could not be reached, refused the
admin key or the settings, or the previous settings could not be restored;
2 a usage error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from interlock.cli.options import UrlOption

if TYPE_CHECKING:  # urllib is imported when a call is made: --help stays light
    import urllib.error

__all__ = ["DESCRIPTIONS", "AdminError", "ChaosArgs", "GatewayAdmin", "phases", "register", "run"]

Settings = dict[str, Any]
Sleep = Callable[[float], None]

DESCRIPTIONS: dict[str, str] = {
    "provider-outage": "every call fails with HTTP 503: failover and breakers take over",
    "latency-spike": "every call waits 2 s before it starts: timeouts and latency routing",
    "partial-degradation": "30 % errors, 5 % timeouts and 300 ms added to every call",
    "flapping": "every call fails with HTTP 500, switched on and off every --interval s",
    "mid-stream-cuts": "streams break after 3 chunks: clients get an SSE error event",
    "connection-resets": "half of the calls fail with a connection reset",
}
COMMANDS = ("list", "off")
WATCH = (
    "interlock_chaos_injections_total",
    "interlock_breaker_state",
    "interlock_requests_total",
)


def _scenarios() -> dict[str, dict[str, float | int]]:
    """The scenarios, imported only when a drill runs: --help stays light."""
    from interlock.config.chaos import SCENARIOS

    return SCENARIOS


class AdminError(Exception):
    """The admin API call failed; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class ChaosArgs:
    """The parsed ``interlock chaos`` command line."""

    scenario: str  # a name from SCENARIOS, "list" or "off"
    url: str = "http://127.0.0.1:8080"
    admin_key: str | None = None
    deployment: str | None = None
    duration_s: float = 60.0
    interval_s: float = 10.0
    timeout_s: float = 10.0
    json_out: bool = False  # `list` and `off`: JSON on stdout


class GatewayAdmin:
    """``/admin/chaos`` on one gateway; every failure becomes an ``AdminError``."""

    def __init__(self, url: str, admin_key: str, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self._admin_key = admin_key
        self._timeout_s = timeout_s

    def get_chaos(self) -> Settings:
        return self._call("GET", None)

    def put_chaos(self, settings: Mapping[str, Any]) -> Settings:
        return self._call("PUT", json.dumps(settings).encode())

    def _call(self, method: str, body: bytes | None) -> Settings:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.url + "/admin/chaos",
            data=body,
            method=method,
            headers={
                "authorization": f"Bearer {self._admin_key}",
                "content-type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise self._refused(exc) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except TimeoutError as exc:
            raise self._unreachable(exc) from None
        except (OSError, ValueError) as exc:  # reset mid-answer, or a body that is not JSON
            raise AdminError(f"bad answer from the gateway at {self.url}: {exc}") from None
        if not isinstance(answer, dict):
            raise AdminError(f"bad answer from the gateway at {self.url}: {answer!r}")
        return answer

    def _unreachable(self, reason: object) -> AdminError:
        if isinstance(reason, TimeoutError):
            return AdminError(
                f"the gateway at {self.url} did not answer within {self._timeout_s:g} s"
            )
        return AdminError(f"cannot reach the gateway at {self.url}: {reason}")

    def _refused(self, exc: urllib.error.HTTPError) -> AdminError:
        message = _error_message(exc)
        if exc.code == 401:
            return AdminError(
                f"the gateway refused the admin key (HTTP 401): {message} "
                "Check --admin-key (or INTERLOCK_ADMIN_KEY) against server.admin_key."
            )
        if exc.code == 403:
            return AdminError(f"the gateway refused the admin call (HTTP 403): {message}")
        if exc.code == 400:
            return AdminError(f"the gateway rejected the chaos settings: {message}")
        if exc.code == 404:
            return AdminError(f"{self.url} has no /admin/chaos: is it an Interlock gateway?")
        return AdminError(f"the gateway answered HTTP {exc.code}: {message}")


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The OpenAI-style ``error.message`` of a refusal, or its raw body."""
    try:
        raw = exc.read()
    except OSError:
        return exc.reason
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace").strip() or str(exc.reason)


def phases(scenario: str, duration_s: float, interval_s: float) -> Iterator[tuple[bool, float]]:
    """(rule on?, seconds) steps that make up a drill; only flapping switches."""
    if scenario != "flapping":
        yield True, duration_s
        return
    on, left = True, duration_s
    while True:
        step = min(interval_s, left)
        yield on, step
        left -= step
        if left <= 0:
            return
        on = not on


def drill_settings(scenario: str, deployment: str) -> Settings:
    return {"enabled": True, "rules": [{"deployment": deployment, **_scenarios()[scenario]}]}


def describe(settings: Mapping[str, Any]) -> str:
    rules = settings.get("rules") or []
    state = "enabled" if settings.get("enabled") else "disabled"
    return f"{state}, {len(rules)} rule{'' if len(rules) == 1 else 's'}"


def _announce(args: ChaosArgs, out: TextIO) -> None:
    assert args.deployment is not None
    fields = " ".join(f"{k}={v}" for k, v in _scenarios()[args.scenario].items())
    print(
        f"Chaos drill {args.scenario!r} on deployment {args.deployment!r} at {args.url} "
        f"for {args.duration_s:g} s (Ctrl-C ends it early).",
        f"Injected: {fields} ({DESCRIPTIONS.get(args.scenario, 'see interlock chaos list')}).",
        "Watch it:",
        f"  curl -s {args.url.rstrip('/')}/metrics | grep -E '^({'|'.join(WATCH)})'",
        '  the access log: lines with "chaos_injected" name each injected fault',
        sep="\n",
        file=out,
        flush=True,
    )


def run_drill(
    admin: GatewayAdmin, args: ChaosArgs, out: TextIO, sleep: Sleep = time.sleep
) -> Settings:
    """Run the drill and put the previous settings back, however it ends.

    Returns the previous settings. A refused drill or a failed restore
    raises ``AdminError``; Ctrl-C only ends the drill early."""
    assert args.deployment is not None
    previous = admin.get_chaos()
    drill = drill_settings(args.scenario, args.deployment)
    try:
        steps = phases(args.scenario, args.duration_s, args.interval_s)
        for step, (on, seconds) in enumerate(steps):
            admin.put_chaos(drill if on else previous)
            if step == 0:
                _announce(args, out)
            if args.scenario == "flapping":
                print(f"  rule {'on' if on else 'off'} for {seconds:g} s", file=out, flush=True)
            sleep(seconds)
    except KeyboardInterrupt:
        print("Ended early (Ctrl-C).", file=out, flush=True)
    finally:
        _restore(admin, previous)
    print(f"Restored the previous chaos settings ({describe(previous)}).", file=out)
    return previous


def _restore(admin: GatewayAdmin, previous: Settings) -> None:
    try:
        admin.put_chaos(previous)
    except AdminError as exc:
        raise AdminError(
            f"could not restore the previous chaos settings ({exc}). Restore them by hand: "
            f"curl -X PUT {admin.url}/admin/chaos -H 'authorization: Bearer $ADMIN_KEY' "
            f"-H 'content-type: application/json' -d '{json.dumps(previous)}'"
        ) from None


def _scenario_list() -> list[dict[str, Any]]:
    return [
        {"name": name, "description": DESCRIPTIONS.get(name, ""), "rule": rule}
        for name, rule in _scenarios().items()
    ]


def print_scenarios(out: TextIO) -> None:
    scenarios = _scenarios()
    width = max(len(name) for name in scenarios)
    for name, rule in scenarios.items():
        fields = " ".join(f"{k}={v}" for k, v in rule.items())
        print(f"{name:<{width}}  {DESCRIPTIONS.get(name, '')}", file=out)
        print(f"{'':<{width}}  rule: {fields}", file=out)


def _usage_problem(args: ChaosArgs) -> str | None:
    scenarios = _scenarios()
    if args.scenario not in scenarios and args.scenario not in COMMANDS:
        names = ", ".join([*scenarios, *COMMANDS])
        return f"unknown scenario {args.scenario!r}; choose one of: {names}"
    if not args.url.startswith(("http://", "https://")):
        return f"--url must start with http:// or https:// (got {args.url!r})"
    if not args.admin_key:
        return "the admin key is needed: pass --admin-key or set INTERLOCK_ADMIN_KEY"
    if args.scenario in scenarios and not args.deployment:
        return "a drill needs --deployment (a deployment id from the gateway's config)"
    if args.duration_s < 0 or args.interval_s <= 0 or args.timeout_s <= 0:
        return "--duration must be 0 or more; --interval and --timeout more than 0"
    return None


def run(
    args: ChaosArgs,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Sleep = time.sleep,
) -> int:
    """Run ``interlock chaos``; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.scenario == "list":
        if args.json_out:
            print(json.dumps(_scenario_list(), indent=2), file=out)
        else:
            print_scenarios(out)
        return 0
    problem = _usage_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=err)
        return 2
    assert args.admin_key is not None
    admin = GatewayAdmin(args.url, args.admin_key, args.timeout_s)
    try:
        if args.scenario == "off":
            now = admin.put_chaos({"enabled": False, "rules": []})
            if args.json_out:
                print(json.dumps(now, indent=2), file=out)
            else:
                print(f"Chaos is off at {admin.url} ({describe(now)}).", file=out)
        else:
            run_drill(admin, args, out, sleep)
    except AdminError as exc:
        print(f"error: {exc}", file=err)
        return 1
    except KeyboardInterrupt:  # before the drill changed anything, or during the restore
        print("error: interrupted; check the settings with GET /admin/chaos", file=err)
        return 130
    return 0


def chaos(
    scenario: Annotated[
        str, typer.Argument(metavar="SCENARIO", help="a scenario name, `list` or `off`")
    ],
    url: UrlOption = "http://127.0.0.1:8080",
    admin_key: Annotated[
        str | None,
        typer.Option(help="server.admin_key (default: $INTERLOCK_ADMIN_KEY)", show_default=False),
    ] = None,
    deployment: Annotated[
        str | None, typer.Option(help="the deployment id the drill targets")
    ] = None,
    duration: Annotated[float, typer.Option(help="seconds")] = 60.0,
    interval: Annotated[float, typer.Option(help="flapping: seconds on, then off")] = 10.0,
    timeout: Annotated[float, typer.Option(help="seconds per admin call")] = 10.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="`list`: the scenarios; `off`: the settings, as JSON")
    ] = False,
) -> int:
    """Run a fault-injection drill against a running gateway.

    Puts a named chaos rule on one deployment of a running gateway for a
    while, then restores the previous chaos settings (also on Ctrl-C).
    `interlock chaos list` prints the scenarios; `interlock chaos off` clears
    all rules. Exit status: 0 done and restored; 1 the gateway refused or
    could not be reached, or the restore failed; 2 a usage error.
    """
    # The key is read here, not as an envvar default, so --help never shows it.
    key = admin_key if admin_key is not None else os.environ.get("INTERLOCK_ADMIN_KEY")
    return run(ChaosArgs(scenario, url, key, deployment, duration, interval, timeout, json_out))


def register(app: typer.Typer) -> None:
    app.command("chaos")(chaos)
