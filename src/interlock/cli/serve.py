"""``interlock serve``, ``worker`` and ``check-config``.

Startup stays light: the config models are imported when a command runs
(not for ``--help``), the server, uvicorn and the guardrails' detectors only
once the config is loaded, and nothing here imports rich.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from interlock.config import GatewayConfig

__all__ = ["ADMIN_KEY_VAR", "DEV_KEY_VAR", "register"]

DEV_KEY_VAR = "INTERLOCK_DEV_KEY"
ADMIN_KEY_VAR = "INTERLOCK_ADMIN_KEY"  # also what the admin commands send by default

ServeConfig = Annotated[
    str | None,
    typer.Option("--config", help="YAML config (default: bundled simulator config)"),
]
LogLevel = Annotated[str, typer.Option("--log-level", envvar="INTERLOCK_LOG_LEVEL")]


def serve(
    config: ServeConfig = None,
    host: Annotated[str, typer.Option(envvar="INTERLOCK_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="INTERLOCK_PORT")] = 8080,
    log_level: LogLevel = "info",
    workers: Annotated[
        int | None,
        typer.Option(
            envvar="INTERLOCK_WORKERS",
            help="worker processes on the one port (default: server.workers, 1); "
            "more than one needs state.backend redis",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Run the gateway."""
    from interlock.config import ConfigError
    from interlock.telemetry.logging import configure_logging

    try:
        loaded, banner = _load_for_serve(config)
    except ConfigError as exc:
        return _error(str(exc))
    count = loaded.server.workers if workers is None else workers
    problem = "--workers must be at least 1" if count < 1 else loaded.workers_problem(count)
    if problem is not None:
        return _error(problem)
    from interlock.redaction import Redactor  # imports the guardrails' detectors

    # Logging starts once the config says which secrets no line may show.
    redactor = Redactor.from_config(loaded, os.environ)
    configure_logging(log_level, redactor)
    if count > 1:
        from interlock.supervisor import serve_workers

        try:
            return serve_workers(loaded, host, port, count, log_level, banner)
        except OSError as exc:  # the port: taken, or not ours to bind
            return _error(f"cannot listen on {host}:{port}: {exc}")
    from interlock.server import serve as serve_http  # imports uvicorn; keep the rest light

    try:
        return serve_http(loaded, host, port, banner, redactor=redactor)
    except ConfigError as exc:  # found only while building (guardrails rules, proxy variables)
        return _error(str(exc))


def worker(
    config: ServeConfig = None,
    metrics_host: Annotated[str, typer.Option(envvar="INTERLOCK_METRICS_HOST")] = "127.0.0.1",
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="INTERLOCK_METRICS_PORT",
            help="Prometheus /metrics port (0: any free port; -1: off)",
        ),
    ] = 9464,
    log_level: LogLevel = "info",
) -> int:
    """Run batch workers (no HTTP API)."""
    from interlock.config import ConfigError
    from interlock.telemetry.logging import configure_logging

    try:
        loaded, banner = _load_for_serve(config)
    except ConfigError as exc:
        return _error(str(exc))
    from interlock.batch.process import run_worker
    from interlock.redaction import Redactor

    redactor = Redactor.from_config(loaded, os.environ)
    configure_logging(log_level, redactor)
    for line in banner[:1]:  # the key lines are the server's to print
        print(line, flush=True)
    port = None if metrics_port < 0 else metrics_port
    try:
        return run_worker(loaded, metrics_host=metrics_host, metrics_port=port, redactor=redactor)
    except ConfigError as exc:
        return _error(str(exc))


def check_config(
    config: Annotated[str, typer.Argument(metavar="CONFIG", help="the YAML config to check")],
    json_out: Annotated[
        bool, typer.Option("--json", help="print {config, models, deployments} as JSON")
    ] = False,
) -> int:
    """Validate a config file and exit."""
    from interlock.config import ConfigError, load_config

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        return _error(str(exc))
    deployments = sum(len(m.deployments) for m in loaded.models)
    if json_out:
        import json

        report = {"config": config, "models": len(loaded.models), "deployments": deployments}
        print(json.dumps(report, indent=2))
        return 0
    print(f"{config}: OK ({len(loaded.models)} models, {deployments} deployments)")
    return 0


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("check-config")(check_config)


def _load_for_serve(path: str | None) -> tuple[GatewayConfig, list[str]]:
    """The config, and the banner lines that say which one (and the dev key)."""
    from interlock.config import bundled_config_path, load_config

    if path is not None:
        return load_config(path), [f"Config: {path}"]
    env = dict(os.environ)
    banner = [f"Config: bundled default ({bundled_config_path().name}, simulator models)"]
    if DEV_KEY_VAR not in env:
        env[DEV_KEY_VAR] = "sk-dev-" + secrets.token_urlsafe(18)
        banner.append(f"Generated a development key (set {DEV_KEY_VAR} to choose one).")
    banner.append(f"Authenticate with: Authorization: Bearer {env[DEV_KEY_VAR]}")
    # The console and the admin API, on the laptop too: a development admin key.
    if ADMIN_KEY_VAR not in env:
        env[ADMIN_KEY_VAR] = "sk-admin-dev-" + secrets.token_urlsafe(18)
        banner.append(f"Generated a development admin key (set {ADMIN_KEY_VAR} to choose one).")
    banner.append(f"Console: /console, log in with the admin key {env[ADMIN_KEY_VAR]}")
    return load_config(bundled_config_path(), env), banner


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1
