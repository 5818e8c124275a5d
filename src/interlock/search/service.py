"""The search service: a task per query, run here, readable from anywhere.

``start`` checks the request and admits it at once, through the pipeline's
admission stage with the caller's key: a search counts against the key's
limits like any request (401, 403, 429 and 503 come back from the POST, not
later); then it stores the task and runs it in the background. The run:

1. ``searching``: the backends (``ResultSource``, first to answer wins),
   filtered by the content checks when ``safe_search``; a ``results`` event;
2. ``summarizing``: the summary through ``Pipeline.run`` with the admission
   taken at the door (guardrails, cache, router, failover, telemetry and the
   usage ledger as for any chat completion); each piece of text a
   ``summary`` event (streaming tasks), cleaned (``safety.SummaryCleaner``),
   stopped at ``summary_max_chars``;
3. citations checked against the results, follow-ups, ``complete``; or at
   any point ``error`` with the reason, and the task ``failed``.

Readers (``events``) read the task's log from the state store after the
event id they last saw, woken at once on this instance and by polling
elsewhere, with heartbeats while nothing happens. When the last reader
leaves an unfinished streaming task, the run is stopped ``cancel_grace_s``
later unless a reader came back (EventSource reconnects by itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import orjson

from interlock.admission.accounting import Accounting
from interlock.admission.principal import Principal
from interlock.config import KeyLimits
from interlock.config.search import AnonymousSearchConfig, SearchConfig
from interlock.errors import (
    InterlockError,
    InvalidRequest,
    NotFound,
    Overloaded,
    ServiceUnavailable,
)
from interlock.pipeline import ChatStream, ModelRequest, Operation, Pipeline
from interlock.search.backends.base import BackendError, SearchResult
from interlock.search.client_address import ClientAddress
from interlock.search.rerank import embedding_input, reorder
from interlock.search.safety import QueryPolicy, SummaryCleaner, filter_results, filter_summary
from interlock.search.summary import build_messages, check_citations, followups
from interlock.search.tasks import SearchEvent, SearchTask, TaskBoard, TaskStatus, new_task_id
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.record import RequestRecord

__all__ = ["Answer", "ResultSource", "SearchService"]

log = logging.getLogger("interlock.search")

MAX_RESULTS = 20
# The summary's answer length asked of the model; the cleaner cuts by characters.
_SUMMARY_MAX_TOKENS = 512
_FINAL_EVENTS = frozenset({"complete", "error"})


class Answer(Protocol):
    results: list[SearchResult]
    backend: str


class ResultSource(Protocol):
    @property
    def names(self) -> Sequence[str]: ...

    async def search(
        self, query: str, num_results: int, safe_search: bool, only: str | None = None
    ) -> Answer: ...

    async def close(self) -> None: ...


class SearchService:
    def __init__(
        self,
        settings: SearchConfig,
        pipeline: Pipeline,
        open_source: Callable[[], ResultSource],
        board: TaskBoard,
        telemetry: Telemetry,
        accounting: Accounting,
        *,
        default_model: str | None,
        heartbeat_s: float = 15.0,
        poll_s: float = 0.1,
        cancel_grace_s: float = 5.0,
        stall_s: float = 120.0,
        max_running: int = 256,
    ):
        self.settings = settings
        self._pipeline = pipeline
        self._open_source = open_source
        self._source: ResultSource | None = None
        self._opening = asyncio.Lock()
        self._board = board
        self._telemetry = telemetry
        self._accounting = accounting
        self._default_model = default_model
        self._queries = QueryPolicy(settings.max_query_chars)
        # Who an anonymous visitor is, behind the operator's load balancers.
        self.client_address = ClientAddress(settings.anonymous.trusted_proxies)
        self._cleaner = SummaryCleaner(settings.summary_max_chars)
        self._heartbeat_s = heartbeat_s
        self._poll_s = poll_s
        self._cancel_grace_s = cancel_grace_s
        self._stall_s = stall_s
        self._max_running = max_running
        self._running: dict[str, asyncio.Task[None]] = {}
        self._reapers: set[asyncio.Task[None]] = set()

    async def source(self) -> ResultSource:
        """The backends, built at the first search rather than at start: the
        local index may have to be built from the bundled corpus first
        (blocking work, so in a thread), a cost no gateway that never
        searches should pay."""
        if self._source is None:
            async with self._opening:
                if self._source is None:
                    self._source = await asyncio.to_thread(self._open_source)
        return self._source

    # -- the POST ----------------------------------------------------------

    async def start(
        self,
        body: Any,
        authorization: str | None,
        record: RequestRecord,
        client: str | None = None,
    ) -> SearchTask:
        """Check, admit and start a search; raises ``InterlockError``s.
        ``client``: the caller's address, for anonymous mode's limits."""
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        query = self._queries.check(body.get("query"))
        num_results = _int_in(body, "num_results", 5, 1, MAX_RESULTS)
        streaming = _bool(body, "streaming", True)
        safe_search = _bool(body, "safe_search", True)
        backend = _optional_str(body, "backend")
        source = await self.source()
        if backend is not None and backend not in source.names:
            names = ", ".join(source.names)
            raise InvalidRequest(
                f"Unknown search backend `{backend}`; configured: {names}.", param="backend"
            )
        model = _optional_str(body, "model") or self._default_model
        if model is None:
            raise ServiceUnavailable("No chat model is configured for search summaries.")
        model = self._pipeline.canonical(model)  # an alias is the model it names
        self._pipeline.model_group(model)  # 404 for an unknown model
        if len(self._running) >= self._max_running:
            raise Overloaded("Too many searches are running; retry shortly.", retry_after_s=1)

        # The summary call's own record: its usage-ledger row and access-log
        # line carry the POST's request id.
        summary_record = RequestRecord(record.request_id, "POST", "/api/v1/search")
        estimate = {"model": model, "messages": [{"role": "user", "content": query}]}
        door = ModelRequest(Operation.CHAT, estimate, summary_record, authorization)
        admission = self._pipeline.admission
        anonymous = self.settings.anonymous
        visitor: Principal | None = None
        if authorization is None and anonymous.enabled:
            rerank = self.settings.rerank
            models = {model} if rerank is None else {model, rerank.model}
            visitor = _anonymous(client, models, anonymous)
            admitted = await admission.admit_as(visitor, door)
        else:
            admitted = await admission.admit(door)
        record.key_name = summary_record.key_name
        task = SearchTask(
            task_id=new_task_id(),
            query=query,
            streaming=streaming,
            num_results=num_results,
            safe_search=safe_search,
            key_name=summary_record.key_name,
            model=model,
            created=time.time(),
        )
        try:
            await self._board.save(task)
        except BaseException:
            admitted.release()
            raise
        run = _Run(self, task, backend, authorization, summary_record, admitted, visitor)
        self._running[task.task_id] = asyncio.create_task(run.run(), name=task.task_id)
        return task

    async def status(self, task_id: str) -> SearchTask:
        task = await self._board.load(task_id)
        if task is None:
            raise NotFound(f"No search task `{task_id}` (unknown, or expired).")
        return task

    # -- the stream --------------------------------------------------------

    async def events(
        self, task_id: str, after: int = 0
    ) -> AsyncGenerator[SearchEvent | None, None]:
        """The task's events after ``after``; None is a heartbeat. Ends after
        ``complete`` or ``error``. Raises ``NotFound`` before the first."""
        await self.status(task_id)
        board = self._board
        await board.subscribe(task_id, 1)
        try:
            quiet_since = time.monotonic()
            beat_due = quiet_since + self._heartbeat_s
            while True:
                events = await board.read(task_id, after)
                for event in events:
                    yield event
                    after = event.id
                    if event.event in _FINAL_EVENTS:
                        return
                now = time.monotonic()
                if events:
                    quiet_since, beat_due = now, now + self._heartbeat_s
                    continue
                if now >= beat_due:
                    yield None
                    beat_due = now + self._heartbeat_s
                if now - quiet_since >= self._stall_s and await self._lost(task_id):
                    yield SearchEvent(after + 1, "error", _lost_error())
                    return
                local = task_id in self._running
                await board.wait(task_id, self._heartbeat_s if local else self._poll_s)
        finally:
            await self._leave(task_id)

    async def _lost(self, task_id: str) -> bool:
        """An unfinished task nobody has written to for ``stall_s``: its
        instance died (or the task expired)."""
        task = await self._board.load(task_id)
        return task is None or not task.status.finished

    async def _leave(self, task_id: str) -> None:
        board = self._board
        try:
            readers = await board.subscribe(task_id, -1)
        except Exception:  # the store is out: the run goes on to its end
            return
        if readers > 0:
            return
        board.forget(task_id)
        reaper = asyncio.create_task(self._cancel_if_abandoned(task_id))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def _cancel_if_abandoned(self, task_id: str) -> None:
        await asyncio.sleep(self._cancel_grace_s)
        raw = await self._board.load(task_id)
        if raw is None or raw.status.finished or not raw.streaming:
            return
        if await self._board.subscribe(task_id, 0) > 0:
            return  # a reader came back
        running = self._running.get(task_id)
        if running is not None:
            running.cancel()
        else:
            await self._board.cancel(task_id)  # its instance stops it

    async def aclose(self) -> None:
        """Stop every run and release the backends (at shutdown)."""
        tasks = [*self._running.values(), *self._reapers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._source is not None:
            await self._source.close()


class _Run:
    """One task's run, on the instance that accepted it."""

    def __init__(
        self,
        service: SearchService,
        task: SearchTask,
        backend: str | None,
        authorization: str | None,
        record: RequestRecord,
        admitted: Any,
        visitor: Principal | None,
    ):
        self.service = service
        self.task = task
        self.backend = backend
        self.authorization = authorization
        self.record = record
        self.admitted = admitted
        self.visitor = visitor  # an anonymous caller's principal, else None (the key's)
        self.began = time.perf_counter()

    def _mark(self, name: str) -> None:
        self.task.timings[name] = round((time.perf_counter() - self.began) * 1000, 3)

    async def _emit(self, event: str, data: dict[str, Any]) -> None:
        await self.service._board.append(self.task.task_id, event, data)

    async def _set_status(self, status: TaskStatus) -> None:
        self.task.status = status
        await self.service._board.save(self.task)

    async def run(self) -> None:
        service, task, record = self.service, self.task, self.record
        admitted = self.admitted
        try:
            await self._set_status(TaskStatus.SEARCHING)
            results = await self._search()
            await self._set_status(TaskStatus.SUMMARIZING)
            admitted, body = None, self._summary_body(results)
            request = ModelRequest(Operation.CHAT, body, record, self.authorization)
            answer = await service._pipeline.run(request, self.admitted)
            assert isinstance(answer, ChatStream)
            text = await self._read_summary(answer)
            await self._finish(text, results)
            record.status = 200
        except asyncio.CancelledError:
            record.status = 499
            await self._fail(
                {"message": "The search was cancelled.", "type": "cancelled", "code": "cancelled"},
                "cancelled",
            )
            raise
        except InterlockError as exc:
            record.status = exc.status_code
            record.error_type = exc.error_type
            error = exc.to_body()["error"]
            assert isinstance(error, dict)
            await self._fail(error, exc.code or exc.error_type)
        except BackendError as exc:
            record.status = 502
            await self._fail(
                {
                    "message": str(exc),
                    "type": "search_backend_error",
                    "code": "no_backend_answered",
                },
                "backends_failed",
            )
        except Exception as exc:  # our bug: logged, the task failed, the service goes on
            log.error("search task failed", exc_info=exc, extra={"task_id": task.task_id})
            record.status = 500
            await self._fail(
                {"message": "The search failed.", "type": "server_error", "code": None},
                "internal_error",
            )
        finally:
            if admitted is not None:
                admitted.release()
            service._running.pop(task.task_id, None)
            service._telemetry.finish(record)
            await service._accounting.finish(record)

    async def _search(self) -> list[SearchResult]:
        task = self.task
        source = await self.service.source()
        rerank = self.service.settings.rerank
        wanted = task.num_results if rerank is None else max(task.num_results, rerank.candidates)
        answer = await source.search(task.query, wanted, task.safe_search, only=self.backend)
        results = list(answer.results)[:wanted]
        if rerank is not None and len(results) > 1:
            results = await self._rerank(rerank.model, results)
        results = results[: task.num_results]
        if task.safe_search:
            results = filter_results(results)
        task.results = [r.to_json() for r in results]
        task.backend = answer.backend
        self._mark("results_ms")
        await self._emit(
            "results",
            {
                "results": task.results,
                "backend": answer.backend,
                "took_ms": task.timings["results_ms"],
            },
        )
        return results

    async def _rerank(self, model: str, results: list[SearchResult]) -> list[SearchResult]:
        """``results`` in order of meaning (``rerank.py``), through the
        gateway's embeddings pipeline as this caller; on any failure, the
        backend's order (a search is not failed for its ordering)."""
        service, task = self.service, self.task
        record = RequestRecord(self.record.request_id, "POST", "/api/v1/search")
        body = {"model": model, "input": embedding_input(task.query, results)}
        request = ModelRequest(Operation.EMBEDDINGS, body, record, self.authorization)
        try:
            admitted = None
            if self.visitor is not None:
                admitted = await service._pipeline.admission.admit_as(self.visitor, request)
            answer = await service._pipeline.run(request, admitted)
            assert isinstance(answer, dict)
            ordered = reorder(results, answer, len(results))
            record.status = 200
        except InterlockError as exc:
            record.status = exc.status_code
            log.warning(
                "search re-ranking failed; the backend's order stands",
                extra={"task_id": task.task_id, "error": exc.message},
            )
            return results
        finally:
            service._telemetry.finish(record)
            await service._accounting.finish(record)
        self._mark("reranked_ms")
        return ordered

    def _summary_body(self, results: Sequence[SearchResult]) -> dict[str, Any]:
        # temperature 0: the same question over the same results is the same
        # request, answered by the pipeline's cache the second time.
        return {
            "model": self.task.model,
            "messages": build_messages(self.task.query, results),
            "stream": True,
            "temperature": 0,
            "max_tokens": _SUMMARY_MAX_TOKENS,
        }

    async def _read_summary(self, stream: ChatStream) -> str:
        service, task = self.service, self.task
        limit = service.settings.summary_max_chars
        parts: list[str] = []
        length = 0
        cancel_checked = time.monotonic()
        try:
            async for _ in stream.opening():
                pass
            chunks = _with_first(stream.first, stream.chunks)
            async for chunk in chunks:
                delta = _content(chunk)
                if not delta:
                    continue
                if not parts:
                    self._mark("first_token_ms")
                parts.append(delta)
                length += len(delta)
                if task.streaming:
                    await self._emit("summary", {"text": service._cleaner.clean(delta)})
                if length >= limit:
                    break  # the rest would be cut anyway: stop the model
                now = time.monotonic()
                if now - cancel_checked >= 1.0:
                    cancel_checked = now
                    if await service._board.cancelled(task.task_id):
                        raise asyncio.CancelledError
        finally:
            await stream.aclose()
        return "".join(parts)

    async def _finish(self, text: str, results: Sequence[SearchResult]) -> None:
        service, task = self.service, self.task
        checked, citations = check_citations(text, results)
        if task.safe_search:
            checked = filter_summary(checked)
        task.summary = service._cleaner.cut(service._cleaner.clean(checked))
        task.citations = [c.to_json() for c in citations]
        task.followups = followups(task.query, results)
        await self._emit("citations", {"citations": task.citations})
        await self._emit("followups", {"followups": task.followups})
        self._mark("complete_ms")
        task.cache = self.record.cache
        task.status = TaskStatus.COMPLETED
        await service._board.save(task)
        await self._emit(
            "complete",
            {
                "status": "completed",
                "summary": task.summary,
                "cache": task.cache,
                "timings": task.timings,
            },
        )

    async def _fail(self, error: dict[str, Any], reason: str) -> None:
        task = self.task
        task.status = TaskStatus.FAILED
        task.error = {**error, "reason": reason}
        self._mark("failed_ms")
        try:
            await self.service._board.save(task)
            await self._emit("error", {"error": error, "reason": reason})
        except Exception as exc:  # the store is out: readers see the stall bound
            log.warning("search task's failure not recorded", exc_info=exc)


async def _with_first(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


def _content(chunk: bytes) -> str:
    """The text in one OpenAI chunk (choice 0), or ''."""
    try:
        parsed = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return ""
    choices = parsed.get("choices") if isinstance(parsed, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return ""
    delta = choices[0].get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


def _anonymous(client: str | None, models: set[str], settings: AnonymousSearchConfig) -> Principal:
    """One principal per client address, limited as ``search.anonymous``
    says and to the search's models. Named by a digest of the address, so the
    access log and usage ledger hold no addresses."""
    digest = hashlib.sha256((client or "unknown").encode()).hexdigest()[:16]
    return Principal(
        name=f"anonymous:{digest}",
        tier="anonymous",
        limits=KeyLimits(rpm=settings.rpm, max_concurrent=settings.max_concurrent),
        allowed_models=frozenset(models),
        priority=-1,  # behind every key in the in-flight queue
    )


def _lost_error() -> dict[str, Any]:
    return {
        "error": {
            "message": "The search task stopped making progress (its instance may have stopped).",
            "type": "server_error",
            "code": "task_lost",
        },
        "reason": "task_lost",
    }


def _int_in(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"`{name}` must be an integer from {low} to {high}.", param=name)
    return value


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"`{name}` must be true or false.", param=name)
    return value


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidRequest(f"`{name}` must be a non-empty string.", param=name)
    return value
