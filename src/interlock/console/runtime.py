"""What the console keeps in each gateway process: the session signer and
the window of metric scrapes the overview compares."""

from __future__ import annotations

from dataclasses import dataclass, field

from interlock.console.overview import MetricsWindow
from interlock.console.session import SessionSigner

__all__ = ["ConsoleRuntime"]


@dataclass(slots=True)
class ConsoleRuntime:
    # None: no admin key, so no console.
    signer: SessionSigner | None = None
    window: MetricsWindow = field(default_factory=MetricsWindow)

    @classmethod
    def for_admin_key(cls, admin_key_digest: bytes | None) -> ConsoleRuntime:
        signer = SessionSigner(admin_key_digest) if admin_key_digest is not None else None
        return cls(signer)
