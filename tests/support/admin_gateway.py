"""What admin-API tests start: the gateway in process, with an admin key,
its own SQLite records store and no batch worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import InProcessGateway


def admin_gateway(
    tmp_path: Path, admin_key: str, config: dict[str, Any] | None = None, **sections: Any
) -> InProcessGateway:
    """``config`` (models and keys; the simulator's by default) served with
    ``admin_key`` as the admin key, and any other config ``sections``; the
    test key is ``TEST_KEY``."""
    raw: dict[str, Any] = {
        **(config or simulator_config()),
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "server": {"admin_key": "os.environ/ADMIN_KEY", "access_log": False},
        "batch": {"enabled": False},
        **sections,
    }
    env = {"TEST_KEY": TEST_KEY, "ADMIN_KEY": admin_key}
    return InProcessGateway(create_app(parse_config(raw, env=env)))
