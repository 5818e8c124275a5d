"""Background responses created with ``stream: true``, with the official
``openai`` SDK unchanged: the events as they come, read again from any
``sequence_number`` (``retrieve(id, stream=True, starting_after=N)``), a
client that leaves does not stop the response, cancel, a failure after the
start; and, on two gateway processes sharing Redis and PostgreSQL, read
again and cancelled from the other instance, and failed when the instance
running it dies."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest

from interlock.api.background_streams import BackgroundStreams
from interlock.app import create_app
from interlock.config import parse_config
from interlock.redaction import Redactor
from interlock.state import StateStoreUnavailable
from interlock.state.event_log import EventLog
from interlock.state.memory import MemoryStateStore
from tests.conftest import TEST_KEY
from tests.support.openai_clients import openai_client
from tests.support.pg_scratch import scratch_database
from tests.support.redis_proxy import RedisProxy
from tests.support.redis_scratch import scratch_prefix
from tests.support.servers import GatewayProcess, InProcessGateway
from tests.support.waiting import wait_for

OTHER_KEY = "sk-other-background-streams"
REDIS_URL = "redis://127.0.0.1:6379/13"
MODELS = [
    {"name": "sim", "deployments": [{"id": "sim-1", "provider": "simulator"}]},
    # 40 tokens at 40 a second: a second to write, time enough to leave early.
    {
        "name": "paced",
        "deployments": [
            {
                "id": "paced-1",
                "provider": "simulator",
                "params": {"tokens_per_s": 40, "max_tokens": 40},
            }
        ],
    },
    # Ten seconds to its first token: a response to cancel.
    {
        "name": "slow",
        "deployments": [{"id": "slow-1", "provider": "simulator", "params": {"ttft_ms": 10_000}}],
    },
    {
        "name": "cut",
        "deployments": [
            {"id": "cut-1", "provider": "simulator", "params": {"cut_after_tokens": 3}}
        ],
    },
]


def _config(**sections: Any) -> dict[str, Any]:
    return {
        "models": MODELS,
        "keys": [
            {"name": "test", "key": "os.environ/TEST_KEY"},
            {"name": "other", "key": OTHER_KEY},
        ],
        "batch": {"enabled": False},
        "registry": {"enabled": False},
        **sections,
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(_config(), tmp_path_factory.mktemp("gw"), env={"TEST_KEY": TEST_KEY})
    yield gateway
    gateway.close()


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai_client(gateway, TEST_KEY) as client:
        yield client


def _text(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_the_events_come_as_a_stream_and_the_response_is_stored(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="sim", input="Hi", background=True, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    first, last = events[0], events[-1]
    assert first.type == "response.created"
    assert first.response.background is True and first.response.status == "in_progress"
    assert last.type == "response.completed" and last.response.output_text == _text(events)
    stored = client.responses.retrieve(last.response.id)
    assert stored.model_dump() == last.response.model_dump()


def test_a_client_that_left_reads_on_from_the_event_it_saw_last(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="paced", input="Go on", background=True, stream=True)
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 5:
            break
    stream.close()  # gone: the response runs on
    response_id = seen[0].response.id
    rest = list(client.responses.retrieve(response_id, stream=True, starting_after=4))
    assert [e.sequence_number for e in rest] == list(range(5, 5 + len(rest)))
    assert rest[-1].type == "response.completed"
    done = rest[-1].response
    assert _text(seen + rest) == done.output_text and done.usage is not None
    # All of it again, the same events.
    again = list(client.responses.retrieve(response_id, stream=True))
    assert [e.model_dump() for e in again] == [e.model_dump() for e in seen + rest]
    assert client.responses.retrieve(response_id).status == "completed"


def test_leaving_at_once_does_not_stop_the_response(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    stream = client.responses.create(model="paced", input="Go on", background=True, stream=True)
    created = next(iter(stream))
    stream.close()
    assert "interlock_background_streams 1.0" in httpx.get(gateway.base_url + "/metrics").text

    def finished() -> Any:
        found = client.responses.retrieve(created.response.id)
        return found if found.status == "completed" else None

    done = wait_for(finished, what="the abandoned background stream to finish")
    assert done.output_text and done.usage is not None and done.usage.output_tokens > 0

    def none_running() -> bool:  # the run ends just after it stores its answer
        return "interlock_background_streams 0.0" in httpx.get(gateway.base_url + "/metrics").text

    wait_for(none_running, what="the gauge to come back to 0")


def test_a_cancelled_stream_ends_and_is_stored_cancelled(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="slow", input="Wait", background=True, stream=True)
    events = iter(stream)
    created = next(events)
    cancelled = client.responses.cancel(created.response.id)
    assert cancelled.status == "cancelled"
    rest = list(events)  # the stream ends: no answer is coming
    assert all(e.type != "response.completed" for e in rest)
    assert client.responses.retrieve(created.response.id).status == "cancelled"
    stream.close()


def test_a_failure_after_the_start_is_an_error_event_and_a_failed_response(
    client: openai.OpenAI,
) -> None:
    events = list(client.responses.create(model="cut", input="Hi", background=True, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "error"
    stored = client.responses.retrieve(events[0].response.id)
    assert stored.status == "failed" and stored.error is not None


def test_only_streamed_background_responses_are_read_as_streams(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    plain = client.responses.create(model="sim", input="Hi")
    with pytest.raises(openai.BadRequestError) as refused:
        list(client.responses.retrieve(plain.id, stream=True))
    assert refused.value.param == "stream"
    events = list(client.responses.create(model="sim", input="Hi", background=True, stream=True))
    with openai_client(gateway, OTHER_KEY) as other, pytest.raises(openai.NotFoundError):
        list(other.responses.retrieve(events[0].response.id, stream=True))


def test_a_model_that_refuses_at_once_is_an_http_error_and_nothing_is_stored(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.NotFoundError):
        list(client.responses.create(model="no-such", input="Hi", background=True, stream=True))


def test_a_draining_gateway_lets_runs_finish_within_its_drain_time(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Nobody reads either stream when SIGTERM comes: the steady one (two to
    # three seconds) finishes within the drain time and is stored completed;
    # the stuck one (a minute to its first token) is stopped, stored failed.
    where = tmp_path_factory.mktemp("drain")
    steady = {"tokens_per_s": 20, "max_tokens": 60}
    models = [
        {
            "name": "steady",
            "deployments": [{"id": "s-1", "provider": "simulator", "params": steady}],
        },
        {
            "name": "stuck",
            "deployments": [{"id": "t-1", "provider": "simulator", "params": {"ttft_ms": 60_000}}],
        },
    ]
    config = {
        **_config(server={"drain_timeout_s": 8}),
        "models": models,
        "store": {"url": f"sqlite+aiosqlite:///{where / 'records.db'}"},
    }
    first = GatewayProcess(config, where, env={"TEST_KEY": TEST_KEY})
    try:
        with openai_client(first, TEST_KEY) as client:
            ids = {}
            for model in ("stuck", "steady"):  # the stuck one opens after a heartbeat wait
                stream = client.responses.create(
                    model=model, input="Go", background=True, stream=True
                )
                ids[model] = next(iter(stream)).response.id
                stream.close()
            assert client.responses.retrieve(ids["steady"]).status == "in_progress"
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
    finally:
        first.close()
    second = GatewayProcess(config, where, env={"TEST_KEY": TEST_KEY})
    try:
        with openai_client(second, TEST_KEY) as client:
            done = client.responses.retrieve(ids["steady"])
            assert done.status == "completed" and done.output_text
            stopped = client.responses.retrieve(ids["stuck"])
            assert stopped.status == "failed" and stopped.error is not None
    finally:
        second.close()


# -- two instances sharing Redis and PostgreSQL ----------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    with scratch_prefix(REDIS_URL, "bgstreams") as prefix, scratch_database("bgstreams") as db:
        config = _config(
            state={"backend": "redis", "url": REDIS_URL, "prefix": prefix, "timeout_s": 10.0},
            store={"url": db},
        )
        gateways = [
            GatewayProcess(config, tmp_path_factory.mktemp(f"gw{n}"), env={"TEST_KEY": TEST_KEY})
            for n in range(2)
        ]
        yield gateways
        for gateway in gateways:
            gateway.close()


def test_another_instance_reads_on_and_cancels(pair: list[GatewayProcess]) -> None:
    running, other = pair
    with openai_client(running, TEST_KEY) as here, openai_client(other, TEST_KEY) as there:
        stream = here.responses.create(model="paced", input="Go", background=True, stream=True)
        reading = iter(stream)
        seen = [next(reading) for _ in range(3)]
        stream.close()
        rest = list(there.responses.retrieve(seen[0].response.id, stream=True, starting_after=2))
        assert rest[0].sequence_number == 3 and rest[-1].type == "response.completed"
        assert _text(seen + rest) == rest[-1].response.output_text

        slow = here.responses.create(model="slow", input="Wait", background=True, stream=True)
        slow_events = iter(slow)
        slow_id = next(slow_events).response.id
        assert there.responses.cancel(slow_id).status == "cancelled"
        ended = list(slow_events)  # its instance saw the flag and stopped it
        assert all(e.type != "response.completed" for e in ended)
        assert here.responses.retrieve(slow_id).status == "cancelled"
        slow.close()


def test_a_reader_learns_that_the_instance_running_it_died(pair: list[GatewayProcess]) -> None:
    running, other = pair
    with openai_client(running, TEST_KEY) as here, openai_client(other, TEST_KEY) as there:
        stream = here.responses.create(model="slow", input="Wait", background=True, stream=True)
        response_id = next(iter(stream)).response.id
        stream.close()
        running.proc.kill()
        running.proc.wait(10)
        events = list(there.responses.retrieve(response_id, stream=True, starting_after=1))
        assert [e.type for e in events] == ["error"] and events[0].sequence_number == 2
        assert there.responses.retrieve(response_id).status == "failed"


# -- the reader, on its own ---------------------------------------------------------


async def test_a_reader_that_finds_the_log_broken_and_nobody_writing_ends_with_an_error() -> None:
    # An entry gone (evicted from a full in-memory store) with no instance
    # writing: the reader must end, not wait for it for ever.
    state = MemoryStateStore()
    streams = BackgroundStreams(
        cast(Any, None),  # no pipeline, telemetry or accounting: nothing runs here
        cast(Any, None),
        cast(Any, None),
        state,
        60,
        Redactor(),
        poll_s=0.01,
        lost_after_s=0.05,
    )
    log = EventLog(state, "responses", 60)
    for n in range(3):
        await log.append("resp_x", b'event: e\ndata: {"sequence_number":%d}\n\n' % n)
    await state.delete("responses:ev:resp_x:2")
    lost: list[Any] = []

    async def on_lost(response: Any) -> None:
        lost.append(response)

    shell = {"id": "resp_x", "status": "in_progress"}
    read = [event async for event in streams.events("resp_x", None, on_lost, shell)]
    assert read[0].startswith(b"event: e") and len(read) == 2
    assert read[1].startswith(b"event: error") and b'"sequence_number":1' in read[1]
    assert [response["status"] for response in lost] == ["failed"]


def test_with_the_state_store_out_creation_is_a_503_and_a_run_stops(tmp_path: Path) -> None:
    # Redis behind a proxy the test kills: a background stream cannot keep
    # its events, so creating one is refused and nothing is stored; a
    # running one stops, stored failed, once its writes fail.
    proxy = RedisProxy()
    try:
        with scratch_prefix(REDIS_URL, "bgstreams-out") as prefix:
            config = _config(
                state={"backend": "redis", "url": proxy.url(13), "prefix": prefix},
                store={"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
            )
            gateway = InProcessGateway(create_app(parse_config(config, env={"TEST_KEY": TEST_KEY})))
            try:
                url = gateway.base_url + "/v1"
                with openai.OpenAI(base_url=url, api_key=TEST_KEY, max_retries=0) as client:
                    stream = client.responses.create(
                        model="paced", input="Go", background=True, stream=True
                    )
                    response_id = next(iter(stream)).response.id
                    stream.close()
                    proxy.kill()

                    def stopped() -> Any:
                        found = client.responses.retrieve(response_id)
                        return found if found.status == "failed" else None

                    assert wait_for(stopped, what="the run to stop").error is not None
                    with pytest.raises(openai.InternalServerError) as refused:
                        list(
                            client.responses.create(
                                model="sim", input="Go", background=True, stream=True
                            )
                        )
                    assert refused.value.status_code == 503
            finally:
                gateway.close()
    finally:
        proxy.close()


async def test_a_reader_ends_with_an_error_event_while_the_store_is_out() -> None:
    class Out(MemoryStateStore):
        async def get(self, key: str) -> bytes | None:
            raise StateStoreUnavailable("out")

    streams = BackgroundStreams(
        cast(Any, None), cast(Any, None), cast(Any, None), Out(), 60, Redactor()
    )

    async def on_lost(response: Any) -> None:
        raise AssertionError("an outage is not a lost instance")

    read = [e async for e in streams.events("resp_y", 3, on_lost, {"id": "resp_y"})]
    assert len(read) == 1 and read[0].startswith(b"event: error")
    assert b'"sequence_number":4' in read[0]


def test_a_compacted_stream_logs_its_compaction_item_first(client: openai.OpenAI) -> None:
    loop: list[Any] = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "rain"},
    ]
    events = list(
        client.responses.create(
            model="sim",
            input=loop,
            background=True,
            stream=True,
            context_management=[{"type": "compaction", "compact_threshold": 1}],
        )
    )
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.output_index, e.item.type) for e in added] == [(0, "compaction"), (1, "message")]
    last = events[-1]
    assert [item.type for item in last.response.output] == ["compaction", "message"]
    again = list(client.responses.retrieve(last.response.id, stream=True))
    assert [e.model_dump() for e in again] == [e.model_dump() for e in events]
