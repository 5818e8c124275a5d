"""Gateways starting together on one SQLite file: the switch to WAL mode takes
a lock SQLite does not wait for on its busy timeout, so racing connections
got "database is locked" at connect (a CI failure of the migration test)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from interlock.store.engine import enable_wal


def test_connections_racing_to_a_fresh_file_all_get_wal(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    modes: list[str] = []

    def connect(path: Path) -> None:
        try:
            connection = sqlite3.connect(path, timeout=15, isolation_level=None)
            try:
                enable_wal(connection)
                modes.append(connection.execute("PRAGMA journal_mode").fetchone()[0])
                # What a migration does next: the others switch while it writes.
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("CREATE TABLE IF NOT EXISTS t (x)")
                connection.execute("COMMIT")
            finally:
                connection.close()
        except BaseException as exc:
            errors.append(exc)

    for trial in range(60):  # without the retry, about 1 fresh file in 13 failed
        path = tmp_path / f"{trial}.db"
        threads = [threading.Thread(target=connect, args=(path,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert set(modes) == {"wal"} and len(modes) == 360


def test_an_in_memory_database_is_left_as_it_is() -> None:
    connection = sqlite3.connect(":memory:")
    enable_wal(connection)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "memory"
