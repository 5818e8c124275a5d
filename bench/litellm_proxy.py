"""The LiteLLM proxy, for comparison: its own virtualenv, configured against the mock.

LiteLLM is installed from PyPI into ``bench/.work/litellm-venv`` (never into
the project's environment) at the pinned ``LITELLM_VERSION``; the venv is
reused while the version recorded in it matches, so only the first run pays
for the install (about 45 s and 750 MB here).

The proxy runs as documented for a single worker (``litellm --config ...
--num_workers 1``) with a ``model_list`` that points every model at the mock
through LiteLLM's ``openai/`` provider, a master key, no database, and no
callbacks: nothing is logged or metered per request, which is its fastest
configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from procs import BenchError, CoreLayout, Service, free_port, start_service

__all__ = ["LITELLM_VERSION", "VENV", "ensure_litellm", "start_litellm"]

# A recent release whose `[proxy]` extra installs cleanly from PyPI; newer ones
# tried (1.108.13, 1.109.3, 1.110.2) need litellm-proxy(-extras) versions that
# the package index did not have when this suite was written.
LITELLM_VERSION = "1.106.12"
WORK_DIR = Path(__file__).resolve().parent / ".work"
VENV = WORK_DIR / "litellm-venv"
_MARKER = VENV / "bench-litellm-version"
_INSTALL_TIMEOUT_S = 900

# No cost-map download at start (no network is needed), quiet logs, no
# schema migrations (there is no database).
_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "DISABLE_SCHEMA_UPDATE": "true",
    "LITELLM_MODE": "PRODUCTION",
}
_UNSET = ("DATABASE_URL", "REDIS_HOST", "REDIS_URL", "LITELLM_MASTER_KEY")


def _litellm_bin() -> Path:
    return VENV / "bin" / "litellm"


def ensure_litellm(say: Callable[[str], None] = print) -> Path:
    """The ``litellm`` executable of the pinned version, installing it if needed."""
    marker = _MARKER.read_text().strip() if _MARKER.exists() else ""
    if marker == LITELLM_VERSION and _litellm_bin().exists():
        return _litellm_bin()
    say(f"Installing litellm[proxy]=={LITELLM_VERSION} into {VENV} (first run only) ...")
    shutil.rmtree(VENV, ignore_errors=True)
    python = shutil.which("python3") or sys.executable
    steps = [
        [python, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise BenchError(f"LiteLLM install failed ({' '.join(step[:3])} ...):\n{tail}")
    _MARKER.write_text(LITELLM_VERSION + "\n")
    return _litellm_bin()


def litellm_config(mock_url: str, models: Sequence[tuple[str, str]], key: str) -> dict[str, Any]:
    """A proxy config serving each ``(name, upstream model)`` from the mock."""

    def entry(name: str, upstream: str) -> dict[str, Any]:
        params = {"model": f"openai/{upstream}", "api_base": f"{mock_url}/v1", "api_key": "x"}
        return {"model_name": name, "litellm_params": params}

    return {
        "model_list": [entry(name, upstream) for name, upstream in models],
        "litellm_settings": {
            "callbacks": [],
            "success_callback": [],
            "failure_callback": [],
            "turn_off_message_logging": True,
            "set_verbose": False,
            "request_timeout": 600,
        },
        "general_settings": {
            "master_key": key,
            "disable_spend_logs": True,
            "disable_error_logs": True,
            "allow_requests_on_db_unavailable": True,
        },
    }


def start_litellm(
    mock: Service,
    layout: CoreLayout,
    models: Sequence[tuple[str, str]],
    key: str,
    max_connections: int,
) -> Service:
    """``litellm --num_workers 1`` on the gateway core, ready when its liveness probe answers.

    ``max_connections`` bounds its upstream pool like Interlock's deployment
    setting (LiteLLM's defaults are 1,000 connections, 500 per host).
    """
    config = WORK_DIR / "litellm.yaml"
    config.write_text(yaml.safe_dump(litellm_config(mock.url, models, key), sort_keys=False))
    port = free_port()
    cmd = [
        str(_litellm_bin()), "--config", str(config), "--host", "127.0.0.1",
        "--port", str(port), "--num_workers", "1",
    ]  # fmt: skip
    pool = {
        "AIOHTTP_CONNECTOR_LIMIT": str(max_connections),
        "AIOHTTP_CONNECTOR_LIMIT_PER_HOST": str(max_connections),
    }
    env = {k: v for k, v in os.environ.items() if k not in _UNSET} | _ENV | pool
    url = f"http://127.0.0.1:{port}"
    log = WORK_DIR / "litellm.log"
    pinned = layout.pinned(cmd, layout.gateway)
    return start_service(
        "LiteLLM proxy", pinned, "", url, log, env, timeout_s=180, ready_path="/health/liveliness"
    )
