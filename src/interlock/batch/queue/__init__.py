"""The work queue under batch inference: one interface (``base.WorkQueue``),
on Redis Streams for many processes and machines, or on a table of the
records store for the embedded default."""

from interlock.batch.queue.base import Delivery, QueueUnavailable, WorkQueue

__all__ = ["Delivery", "QueueUnavailable", "WorkQueue"]
