"""``interlock serve`` and ``interlock check-config``."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

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
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        deployments = sum(len(m.deployments) for m in config.models)
        print(f"{args.config}: OK ({len(config.models)} models, {deployments} deployments)")
        return 0

    configure_logging(args.log_level)
    try:
        config, banner = _load_for_serve(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from interlock.server import serve  # imports uvicorn; keep check-config light

    return serve(config, args.host, args.port, banner)
