"""Memory of a server under load: its RSS and the mock's open streams, sampled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from procs import rss_bytes

__all__ = ["MemorySampler", "Sample"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the sampler started
    rss_mib: float
    open_streams: int  # as the mock counts them: streams held upstream right now


@dataclass
class MemorySampler:
    """Samples ``pid``'s RSS (with its children) every ``interval_s`` in a thread.

    ``open_streams`` reads the mock's live stream count; a failure to read it
    (the mock busy past its timeout) is recorded as -1 rather than stopping
    the sampling.
    """

    pid: int
    open_streams: Callable[[], int]
    interval_s: float = 0.25
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_rss_mib(self) -> float:
        return max((s.rss_mib for s in self.samples), default=0.0)

    def seconds_until_open(self, streams: int) -> float | None:
        """When the mock first held ``streams`` streams at once (None: never)."""
        return next((s.t_s for s in self.samples if s.open_streams >= streams), None)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                open_now = self.open_streams()
            except OSError:
                open_now = -1
            rss = rss_bytes(self.pid) / MIB
            self.samples.append(Sample(time.monotonic() - started, rss, open_now))
            self._stop.wait(self.interval_s)
