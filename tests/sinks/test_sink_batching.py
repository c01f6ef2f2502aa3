"""How the sink sizes its inserts (issue 14), against a real broker and real chDB: a
backlog drains in inserts bigger than max_rows (each insert costs the same CPU whatever
its size), still bounded by backlog_rows and max_bytes; a caught-up sink stores a lone
call after max_wait_s, as before."""

from __future__ import annotations

import time

from schemas.serde import encode_call_batch
from sinks.clickhouse import CallWriter, count_calls, open_store
from sinks.clickhouse.sink import CallSink
from tests.sinks.test_clickhouse import make_call
from tests.sinks.test_sink_outages import publish, topics  # noqa: F401 (a fixture)

_BACKLOG = 1_000  # messages of one call each, published before the sink starts


def stored_per_step(sink: CallSink, total: int, timeout: float = 120.0) -> list[int]:
    """The calls each step stored, until `total` are (steps storing nothing left out)."""
    deadline = time.monotonic() + timeout
    sizes: list[int] = []
    while sum(sizes) < total:
        assert time.monotonic() < deadline, f"the sink stored {sum(sizes)} of {total} calls"
        stored = sink.step()
        if stored:
            sizes.append(stored)
    return sizes


def test_a_backlog_drains_in_inserts_bigger_than_max_rows_up_to_backlog_rows(
    kafka,
    topics,  # noqa: F811
    tmp_path,
):
    settings = topics.replace(kafka=kafka)
    messages = [encode_call_batch("flow", [make_call(i)]) for i in range(_BACKLOG)]
    publish(settings, messages).flush(30)
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        sink = CallSink(settings, CallWriter(store), max_rows=100, max_wait_s=2.0, backlog_rows=400)
        sizes = stored_per_step(sink, _BACKLOG)
        assert max(sizes) == 400 and sizes[0] > 100, sizes  # 100 would be max_rows' batch
        assert count_calls(store) == _BACKLOG

        # Caught up: a lone call is stored after max_wait_s, not held for more.
        publish(settings, [encode_call_batch("flow", [make_call(_BACKLOG)])]).flush(30)
        assert stored_per_step(sink, 1) == [1]
        assert count_calls(store) == _BACKLOG + 1
        sink.run(lambda: True)


def test_a_backlog_batch_stays_within_max_bytes(kafka, topics, tmp_path):  # noqa: F811
    settings = topics.replace(kafka=kafka)
    messages = [encode_call_batch("flow", [make_call(i)]) for i in range(_BACKLOG)]
    publish(settings, messages).flush(30)
    per_message = len(messages[0])
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        sink = CallSink(
            settings,
            CallWriter(store),
            max_rows=100,
            max_wait_s=2.0,
            max_bytes=250 * per_message,
        )
        sizes = stored_per_step(sink, _BACKLOG)
        # The bound is checked between fetches of at most 100 messages.
        assert max(sizes) < 350 and sizes[0] > 100, sizes
        assert count_calls(store) == _BACKLOG
        sink.run(lambda: True)


def test_a_call_that_already_waited_max_wait_s_is_stored_without_waiting_again(
    kafka,
    topics,  # noqa: F811
    tmp_path,
):
    """The wait counts from when the call was produced: one that sat in Kafka (during the
    last insert, in a slow worker) past max_wait_s is stored in the next step."""
    settings = topics.replace(kafka=kafka)
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        producer = publish(settings, [])
        old_ms = int(time.time() * 1000) - 700_000  # produced 700 s ago: past max_wait_s
        producer.produce(
            settings.calls_topic,
            key=b"flow",
            value=encode_call_batch("flow", [make_call(0)]),
            timestamp=old_ms,
        )
        producer.flush(30)
        sink = CallSink(settings, CallWriter(store), max_rows=100, max_wait_s=600.0)
        # Without the age, the step would hold the call for max_wait_s (600 s) first.
        started = time.monotonic()
        assert stored_per_step(sink, 1, timeout=300) == [1]
        assert time.monotonic() - started < 300
        assert count_calls(store) == 1
        sink.run(lambda: True)
