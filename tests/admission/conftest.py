"""The records-store fixtures (SQLite and PostgreSQL), for the budget tests."""

from tests.store.conftest import backend, engine, make_ledger

__all__ = ["backend", "engine", "make_ledger"]
