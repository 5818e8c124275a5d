"""The usage ledger's journal: the records a process has accepted but not yet
committed to the database, in local files, so that killing it loses none.

Each process writes its own journal in a directory shared by every process
of the same store on the host: a lock file ``<writer>.lock``, held with
``flock`` for the process's life, and numbered segments
``<writer>.<n>.jnl``, each a header line and then one JSON array per record,
newline-terminated. Records are appended with one ``write()`` per event-loop
turn (group commit), not one per record.

What survives what: a ``write()`` hands the bytes to the kernel, so a
process that is killed (``kill -9``, the OOM killer, a crash) loses nothing
it wrote. There is no ``fsync``: a power loss or a kernel crash loses what
the kernel had not yet written back (ext4 writes dirty pages back within
about 30 s), unless the database already has it.

The ledger starts a new segment whenever it starts writing a batch and
deletes a segment once every record in it is committed. A process that
starts with the same store replays journals whose lock it can take (their
process is gone: the kernel dropped the lock) and then deletes them; the
rows carry a unique ``record_id``, so records the dead process had already
committed are not written twice. A torn last line (a power loss mid-write)
is skipped and counted.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DeadJournal", "LedgerJournal", "dead_journals"]

log = logging.getLogger("interlock.store")

FORMAT = 1
_LOCK = ".lock"
_SEGMENT = ".jnl"


class LedgerJournal:
    """This process's journal in ``directory`` (created, owner-only), for rows
    of ``columns``. Called on the event loop's thread only."""

    def __init__(self, directory: Path, columns: Sequence[str]):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.writer = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._header = orjson.dumps(
            {"journal": FORMAT, "columns": list(columns)}, option=orjson.OPT_APPEND_NEWLINE
        )
        self._lock_path = directory / f"{self.writer}{_LOCK}"
        self._lock_fd = _open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._buffer: list[bytes] = []
        self._scheduled = False
        self._fd: int | None = None
        self._path: Path | None = None
        self._numbered = 0
        self._done: deque[tuple[Path, int]] = deque()  # closed segments, records up to
        self._appended = 0
        self._committed = 0
        self._failing = False
        self.write_failures = 0

    @property
    def uncommitted(self) -> int:
        return self._appended - self._committed

    def append(self, row: Sequence[Any]) -> None:
        """Journal ``row`` at the end of this event-loop turn."""
        self._buffer.append(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
        self._appended += 1
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._write)

    def rotate(self) -> None:
        """Write what is buffered and start a new segment with the next record."""
        self._write()
        self._close_segment()
        self._collect()

    def committed(self, count: int) -> None:
        """The oldest ``count`` uncommitted records are in the database now."""
        self._committed += count
        self._collect()

    def close(self) -> None:
        """Release the journal: deleted if every record is committed, else
        left (its lock released) for the next process to replay."""
        self._write()
        self._close_segment()
        self._collect()
        if self.uncommitted == 0:
            _unlink(self._lock_path)
        else:
            log.error(
                "usage ledger: %d records not committed are left in %s for the next start",
                self.uncommitted,
                self.directory,
            )
        os.close(self._lock_fd)

    def _write(self) -> None:
        self._scheduled = False
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        try:
            if self._fd is None:
                self._numbered += 1
                path = self.directory / f"{self.writer}.{self._numbered:08d}{_SEGMENT}"
                self._fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
                self._path = path
                data = self._header + data
            _write_all(self._fd, data)
        except OSError as exc:
            self.write_failures += 1
            if not self._failing:
                log.error("usage ledger: journal write failed, records are in memory only: %s", exc)
            self._failing = True
            # A torn line must not run into the next record: start a new segment.
            self._close_segment()
            return
        if self._failing:
            self._failing = False
            log.warning("usage ledger: journal writes work again")

    def _close_segment(self) -> None:
        if self._path is not None:
            if self._fd is not None:
                os.close(self._fd)
            self._done.append((self._path, self._appended))
        self._fd = self._path = None

    def _collect(self) -> None:
        while self._done and self._done[0][1] <= self._committed:
            _unlink(self._done.popleft()[0])


class DeadJournal:
    """A journal left by a process that is gone, locked by this one until
    ``remove`` (replayed) or ``release`` (kept for the next start)."""

    def __init__(self, lock_path: Path, lock_fd: int, segments: list[Path]):
        self.lock_path = lock_path
        self.segments = segments
        self._lock_fd = lock_fd
        self.skipped = 0  # torn or unreadable lines

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first, as a dict by column name."""
        for segment in self.segments:
            with segment.open("rb") as file:
                columns = _columns(file.readline())
                if columns is None:
                    self.skipped += 1
                    continue
                for line in file:
                    values = _values(line, len(columns))
                    if values is None:
                        self.skipped += 1
                    else:
                        yield dict(zip(columns, values, strict=True))

    def remove(self) -> None:
        for segment in self.segments:
            _unlink(segment)
        _unlink(self.lock_path)
        os.close(self._lock_fd)

    def release(self) -> None:
        os.close(self._lock_fd)


def dead_journals(directory: Path) -> list[DeadJournal]:
    """The journals in ``directory`` whose process is gone, each locked."""
    found = []
    for lock_path in sorted(directory.glob(f"*{_LOCK}")):
        fd = _lock_if_dead(lock_path)
        if fd is not None:
            segments = directory.glob(f"{lock_path.name.removesuffix(_LOCK)}.*{_SEGMENT}")
            found.append(DeadJournal(lock_path, fd, sorted(segments)))
    return found


def _lock_if_dead(path: Path) -> int | None:
    try:
        fd = _open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: its process lives
        # Replayed and removed by another process between our listing and our lock?
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileNotFoundError(path)
    except OSError:
        os.close(fd)
        return None
    return fd


def _columns(header: bytes) -> list[str] | None:
    try:
        parsed = orjson.loads(header)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or parsed.get("journal") != FORMAT:
        return None
    columns = parsed.get("columns")
    return columns if isinstance(columns, list) else None


def _values(line: bytes, count: int) -> list[Any] | None:
    if not line.endswith(b"\n"):
        return None  # torn: the write never finished
    try:
        values = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return values if isinstance(values, list) and len(values) == count else None


def _open(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("usage ledger: cannot delete journal file %s: %s", path, exc)
