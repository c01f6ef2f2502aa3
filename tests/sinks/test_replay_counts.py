"""A batch stored twice is counted once (sinks/clickhouse/writer.py, invariant 5), on real
chDB: the views on `calls` (red_totals for /metrics, service_map) count rows as they are
inserted, so a writer that replays a batch it may have stored already (it crashed after
the insert and before its Kafka commit, or retries after a failure) writes it with
replay=True, and the calls already held are not inserted again. Both ways a batch is
written: as the CallBatch messages came (encoded.py) and as decoded calls. Then a sink
that crashed after its insert and before its commit, against a real broker: the next
owner of its partitions replays the batch, and it is counted once (in_flight.py)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Producer

from schemas.config import Settings
from schemas.serde import call_batch_records, encode_call_batch
from sinks.clickhouse import CallWriter, count_calls, open_store
from sinks.clickhouse.encoded import EncodedCalls
from sinks.clickhouse.red import read_red
from sinks.clickhouse.service_map import read_map
from sinks.clickhouse.sink import CallSink
from tests.sinks.test_service_map import T0, call

N = 40


@pytest.fixture
def store(tmp_path: Path):
    with open_store(f"chdb://{tmp_path / 'store'}") as opened:
        yield opened


def calls(start: int = 0, stop: int = N) -> list:
    # Two minutes, two destinations, some errors, a call without an answer.
    return [
        call(
            i,
            at_ms=(i % 2) * 60_000,
            dst_service="catalogue" if i % 3 else "carts",
            status=503 if i % 7 == 0 else 200,
            **({"elapsed_ms": None} if i == 5 else {}),
        )
        for i in range(start, stop)
    ]


def as_messages(batch: list) -> EncodedCalls:
    messages = [encode_call_batch(f"flow-{i}", batch[i : i + 8]) for i in range(0, len(batch), 8)]
    return EncodedCalls([(m, *call_batch_records(m)) for m in messages])


def counted(store) -> tuple[int, int, int]:  # noqa: ANN001
    """(RED calls, RED errors, map calls): what the views counted."""
    rows = read_red(store)
    graph = read_map(store, T0, T0.replace(minute=T0.minute + 3))
    red_calls, red_errors = sum(r.calls for r in rows), sum(r.errors for r in rows)
    return red_calls, red_errors, sum(e.calls for e in graph.edges)


def raw_rows(store) -> int:  # noqa: ANN001
    return store.client.query("SELECT count() FROM calls").result_rows[0][0]


@pytest.mark.parametrize("encoded", [True, False], ids=["as encoded", "decoded"])
def test_a_replayed_batch_is_counted_once(store, encoded: bool) -> None:
    writer = CallWriter(store)
    batch = calls()
    form = as_messages if encoded else list
    writer.write(form(batch))
    once = counted(store)
    assert once[0] == N and once[2] == N and once[1] > 0

    # The crashed writer stored half of the next batch (a batch over days, cut short);
    # the replay carries it whole, with the calls before it.
    more = calls(N, N + 20)
    writer.write(form(more[:10]))
    assert writer.write(form(batch + more), replay=True) == []

    assert count_calls(store) == raw_rows(store) == N + 20
    assert counted(store)[0] == counted(store)[2] == N + 20
    errors = sum(1 for c in batch + more if c.status >= 500 or c.call_id == "c00005")
    assert counted(store)[1] == errors


def test_without_replay_a_batch_written_twice_is_counted_twice(store) -> None:
    """Why the sink says which batches may be replays: the table collapses the copies
    (FINAL), the views do not."""
    writer = CallWriter(store)
    writer.write(as_messages(calls()))
    writer.write(as_messages(calls()))
    assert count_calls(store) == N
    assert counted(store)[0] == 2 * N


class Crash(Exception):
    pass


class CrashesBeforeItCommits(CallSink):
    """A writer that dies between its insert and its Kafka commit."""

    def _commit(self) -> None:
        raise Crash


def test_the_next_owner_of_a_batch_a_crashed_writer_stored_counts_it_once(
    kafka, store, tmp_path
) -> None:
    settings = Settings(prefix=f"t{uuid.uuid4().hex[:8]}-", kafka=kafka)
    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    for message, *_ in as_messages(calls()).messages:
        producer.produce(settings.calls_topic, value=message)
    producer.flush(30)

    crashed = CrashesBeforeItCommits(settings, CallWriter(store))
    deadline = time.monotonic() + 120
    with pytest.raises(Crash):
        while time.monotonic() < deadline:
            crashed.step()
    assert raw_rows(store) > 0  # its first batch (all or some of the calls): not committed
    crashed._clear()  # what it held in memory died with it
    crashed.run(lambda: True)  # leaves the group

    sink = CallSink(settings, CallWriter(store))
    while sink.written < N:
        assert time.monotonic() < deadline, "the next owner did not store the batch in time"
        sink.step()
    assert raw_rows(store) == N and counted(store)[0] == counted(store)[2] == N
    # committed past the batch: nothing is a replay any more, nothing is left to read
    for _ in range(3):
        assert sink.step() == 0
    assert not sink._flight.replay()
    committed = sink._consumer.committed(sink._consumer.assignment(), 30)
    assert sum(max(tp.offset, 0) for tp in committed) == len(as_messages(calls()).messages)
    assert not any(tp.metadata for tp in committed)  # the marker is cleared
    sink.run(lambda: True)


def test_a_replayed_batch_of_many_calls_is_looked_up_in_slices(store) -> None:
    """A sink's batch holds up to 25k calls; their ids inline in one lookup passed chDB's
    max_query_size (256 KiB), so a replay after a store fault failed for good (chaos seeds
    with a fill_store fault: "storing made no progress")."""
    writer = CallWriter(store)
    batch = [replace(c, call_id=uuid.uuid4().hex) for c in calls(0, 12_000)]  # ids as long as ours
    writer.write(batch[:7_000])
    writer.write(batch, replay=True)
    assert raw_rows(store) == 12_000
    assert counted(store)[0] == 12_000
