"""A rebalance while the store takes no writes (real broker, real chDB): the sink holds its
partitions paused, gives one to a writer that joins, takes it back when that writer leaves,
and once the store is back stores every call of both partitions. librdkafka keeps a
partition's pause across a revoke, so a partition paused by the hold came back to this
writer paused and was never read again (schemas/runtime/outage.py, PartitionHold)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer

from schemas.config import Settings
from schemas.runtime.topics import ensure_topics
from schemas.serde import encode_call_batch
from sinks.clickhouse import CallWriter, count_calls, open_store
from sinks.clickhouse.sink import CallSink
from tests.sinks.test_clickhouse import make_call


def test_partitions_held_across_a_rebalance_are_read_again_once_the_store_is_back(
    kafka, tmp_path
) -> None:
    settings = Settings(prefix=f"t{uuid.uuid4().hex[:8]}-", kafka=kafka)
    ensure_topics(settings, partitions=2, say=lambda line: None)
    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    for i in range(6):
        value = encode_call_batch(f"flow-{i}", [make_call(i)])
        producer.produce(settings.calls_topic, value=value, partition=i % 2)
    assert producer.flush(30) == 0
    dsn = f"chdb://{tmp_path / 'store'}"
    said: list[str] = []
    store = open_store(dsn)
    sink = CallSink(settings, CallWriter(store), say=said.append)
    store.close()  # every insert now fails, and not because of the calls
    deadline = time.monotonic() + 120
    while not said:
        assert time.monotonic() < deadline, "the sink never held its batch"
        sink.step()
    # Another writer joins (this one gives up a partition, paused), then leaves.
    other = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": settings.sink_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    other.subscribe([settings.calls_topic])
    while not other.assignment():
        assert time.monotonic() < deadline, "the second writer got no partition"
        sink.step()
        other.poll(0.2)
    other.close()
    with open_store(dsn) as store:
        sink.writer = CallWriter(store)
        deadline = time.monotonic() + 120
        while sink.written < 6:
            assert time.monotonic() < deadline, f"stored {sink.written} of 6 calls"
            sink.step()
        assert count_calls(store) == 6
        sink.run(lambda: True)
    assert sink.dead_letters == 0
