"""Reading the file: YAML in, ``os.environ/NAME`` secrets resolved, a
validated ``GatewayConfig`` out; every error names the file and the path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from interlock.config.base import ConfigError, Secret
from interlock.config.gateway import GatewayConfig

__all__ = ["ENV_PREFIX", "bundled_config_path", "load_config", "parse_config"]

ENV_PREFIX = "os.environ/"
_SECRET_FIELDS = {
    "api_key",
    "key",
    "admin_key",
    "password",
    "secret",
    "access_key_id",
    "secret_access_key",
    "session_token",
}


def _resolve_secrets(node: Any, path: str, source: str, env: dict[str, str]) -> Any:
    """Replace ``os.environ/NAME`` strings and wrap secret fields in ``Secret``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            resolved = _resolve_secrets(value, child, source, env)
            if key in _SECRET_FIELDS and isinstance(resolved, str):
                resolved = Secret(resolved)
            out[key] = resolved
        return out
    if isinstance(node, list):
        return [_resolve_secrets(v, f"{path}[{i}]", source, env) for i, v in enumerate(node)]
    if isinstance(node, str) and node.startswith(ENV_PREFIX):
        name = node[len(ENV_PREFIX) :]
        if name not in env:
            raise ConfigError(f"{source}: {path}: environment variable {name} is not set")
        return env[name]
    return node


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def parse_config(
    raw: Any, source: str = "<config>", env: dict[str, str] | None = None
) -> GatewayConfig:
    """Validate already-parsed YAML data; errors name ``source`` and the path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    resolved = _resolve_secrets(raw, "", source, dict(os.environ) if env is None else env)
    try:
        return GatewayConfig.model_validate(resolved)
    except ValidationError as exc:
        problems = [
            f"{source}: {_format_location(err['loc'])}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError("\n".join(problems)) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return parse_config(raw, str(path), env)


def bundled_config_path() -> Path:
    """The default configuration: simulator models only, nothing else needed."""
    # The file sits in the interlock package, one level above this one.
    return Path(__file__).parent.parent / "default_config.yaml"
