"""``interlock serve``, ``check-config``, ``chaos``, ``keys``, ``usage`` and ``search``."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

from interlock import admin_cli, batch_cli, models_cli, search_cli
from interlock.config import ConfigError, GatewayConfig, bundled_config_path, load_config
from interlock.telemetry.logging import configure_logging

__all__ = ["main"]

DEV_KEY_VAR = "INTERLOCK_DEV_KEY"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interlock", description="AI inference gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML config (default: bundled simulator config)")
    serve.add_argument("--host", default=os.environ.get("INTERLOCK_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("INTERLOCK_PORT", "8080")))
    serve.add_argument("--log-level", default=os.environ.get("INTERLOCK_LOG_LEVEL", "info"))
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ["INTERLOCK_WORKERS"]) if "INTERLOCK_WORKERS" in os.environ else None,
        help="worker processes on the one port (default: server.workers, 1); "
        "more than one needs state.backend redis",
    )
    worker = commands.add_parser("worker", help="run batch workers (no HTTP API)")
    worker.add_argument("--config", help="YAML config (default: bundled simulator config)")
    worker.add_argument(
        "--metrics-host", default=os.environ.get("INTERLOCK_METRICS_HOST", "127.0.0.1")
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("INTERLOCK_METRICS_PORT", "9464")),
        help="Prometheus /metrics port (0: any free port; -1: off)",
    )
    worker.add_argument("--log-level", default=os.environ.get("INTERLOCK_LOG_LEVEL", "info"))
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    _add_chaos(commands)
    admin_cli.add_parsers(commands)
    search_cli.add_parsers(commands)
    batch_cli.add_parsers(commands)
    models_cli.add_parsers(commands)
    return parser


def _add_chaos(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chaos = commands.add_parser(
        "chaos",
        help="run a fault-injection drill against a running gateway",
        description="Put a named chaos rule on one deployment of a running gateway for a "
        "while, then restore the previous chaos settings (also on Ctrl-C). "
        "`interlock chaos list` prints the scenarios; `interlock chaos off` clears all rules.",
    )
    chaos.add_argument("scenario", metavar="SCENARIO", help="a scenario name, `list` or `off`")
    chaos.add_argument(
        "--url",
        default=os.environ.get("INTERLOCK_URL", "http://127.0.0.1:8080"),
        help="the gateway (default: $INTERLOCK_URL or http://127.0.0.1:8080)",
    )
    chaos.add_argument(
        "--admin-key",
        default=os.environ.get("INTERLOCK_ADMIN_KEY"),
        help="server.admin_key (default: $INTERLOCK_ADMIN_KEY)",
    )
    chaos.add_argument("--deployment", help="the deployment id the drill targets")
    chaos.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    chaos.add_argument(
        "--interval", type=float, default=10.0, help="flapping: seconds on, then off (default 10)"
    )
    chaos.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per admin call (default 10)"
    )


def _chaos(args: argparse.Namespace) -> int:
    from interlock import chaos_cli  # only this command needs it

    return chaos_cli.main(
        chaos_cli.ChaosArgs(
            scenario=args.scenario,
            url=args.url,
            admin_key=args.admin_key,
            deployment=args.deployment,
            duration_s=args.duration,
            interval_s=args.interval,
            timeout_s=args.timeout,
        )
    )


def _load_for_serve(path: str | None) -> tuple[GatewayConfig, list[str]]:
    if path is not None:
        return load_config(path), [f"Config: {path}"]
    env = dict(os.environ)
    banner = [f"Config: bundled default ({bundled_config_path().name}, simulator models)"]
    if DEV_KEY_VAR not in env:
        env[DEV_KEY_VAR] = "sk-dev-" + secrets.token_urlsafe(18)
        banner.append(f"Generated a development key (set {DEV_KEY_VAR} to choose one).")
    banner.append(f"Authenticate with: Authorization: Bearer {env[DEV_KEY_VAR]}")
    return load_config(bundled_config_path(), env), banner


def _worker(args: argparse.Namespace, config: GatewayConfig, banner: list[str]) -> int:
    from interlock.batch.process import run_worker
    from interlock.redaction import Redactor

    redactor = Redactor.from_config(config, os.environ)
    configure_logging(args.log_level, redactor)
    for line in banner[:1]:  # the key lines are the server's to print
        print(line, flush=True)
    port = None if args.metrics_port < 0 else args.metrics_port
    try:
        return run_worker(
            config, metrics_host=args.metrics_host, metrics_port=port, redactor=redactor
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "chaos":
        return _chaos(args)
    if args.command in ("keys", "usage"):
        return admin_cli.main(args)
    if args.command == "search":
        return search_cli.main(args)
    if args.command == "batch":
        return batch_cli.main(args)
    if args.command == "models":
        return models_cli.main(args)
    if args.command == "check-config":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        deployments = sum(len(m.deployments) for m in config.models)
        print(f"{args.config}: OK ({len(config.models)} models, {deployments} deployments)")
        return 0

    try:
        config, banner = _load_for_serve(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "worker":
        return _worker(args, config, banner)
    return _serve(args, config, banner)


def _serve(args: argparse.Namespace, config: GatewayConfig, banner: list[str]) -> int:
    from interlock.redaction import Redactor  # imports the guardrails' detectors

    workers = config.server.workers if args.workers is None else args.workers
    problem = "--workers must be at least 1" if workers < 1 else config.workers_problem(workers)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    # Logging starts once the config says which secrets no line may show.
    redactor = Redactor.from_config(config, os.environ)
    configure_logging(args.log_level, redactor)
    if workers > 1:
        from interlock.supervisor import serve_workers

        try:
            return serve_workers(config, args.host, args.port, workers, args.log_level, banner)
        except OSError as exc:  # the port: taken, or not ours to bind
            print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
    from interlock.server import serve  # imports uvicorn; keep check-config light

    try:
        return serve(config, args.host, args.port, banner, redactor=redactor)
    except ConfigError as exc:  # found only while building (guardrails rules, proxy variables)
        print(f"error: {exc}", file=sys.stderr)
        return 1
