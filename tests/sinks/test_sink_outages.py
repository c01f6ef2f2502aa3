"""The Kafka -> ClickHouse sink never stops and never leaks (issue 11), against a real
broker and real chDB: calls it cannot store go to the dead-letter topic with the reason
while the rest are stored; a store that takes no writes and a broker that restarts are
waited out (said once; a full disk too), and every call ends up stored exactly once. The
segment publisher and the endpoints follower wait out a broker restart too."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from producers.publisher import SegmentPublisher
from schemas.config import DLQ_SUFFIX, Settings
from schemas.records import Endpoint, Segment
from schemas.serde import (
    _generic_encode_call_batch,
    decode_call,
    decode_segment_batch,
    encode_call_batch,
    encode_endpoint,
)
from sinks.clickhouse import CallWriter, count_calls, open_store, read_calls
from sinks.clickhouse.sink import CallSink
from streams.endpoints import EndpointFollower
from streams.enrich import Directory
from tests.conftest import _free_port_pair, read_topic
from tests.sinks.test_clickhouse import make_call
from wiretide.broker import LocalBroker


@pytest.fixture
def topics() -> Settings:
    """This test's own calls topic and sink group (Kafka: the test's to choose)."""
    return Settings(prefix=f"t{uuid.uuid4().hex[:8]}-")


def publish(
    settings: Settings, messages: list[bytes | None], producer: Producer | None = None
) -> Producer:
    producer = producer or Producer(
        {"bootstrap.servers": settings.kafka, "acks": "all", "message.timeout.ms": 0}
    )
    for value in messages:
        producer.produce(settings.calls_topic, key=b"flow", value=value)
    producer.poll(0)
    return producer


def steps_until(sink: CallSink, done, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the sink did not get there in time"
        sink.step()


def test_calls_the_store_rejects_are_dead_lettered_and_the_rest_stored(kafka, topics, tmp_path):
    settings = topics.replace(kafka=kafka)
    # Another producer's batch: one call's port does not fit the column (serde would clamp).
    bad = make_call(2, src_port=70_000)
    mixed = _generic_encode_call_batch("flow", [make_call(1), bad, make_call(3)])
    no_value = None  # a tombstone: no CallBatch at all
    publish(settings, [mixed, no_value, encode_call_batch("flow", [make_call(4)])]).flush(30)
    said: list[str] = []
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        sink = CallSink(settings, CallWriter(store), say=said.append)
        steps_until(sink, lambda: sink.written == 3)
        assert sorted(c["id"] for c in read_calls(store)) == [
            "call-00001",
            "call-00003",
            "call-00004",
        ]
        sink.run(lambda: True)  # closes the consumer (and leaves the group)
    letters = read_topic(kafka, settings.calls_topic + DLQ_SUFFIX)
    tombstone, letter = sorted(letters, key=lambda m: m.value() is not None)
    assert tombstone.value() is None and dict(tombstone.headers())["format"] == b"original"
    headers = dict(letter.headers())
    assert decode_call(letter.value()) == bad and headers["format"] == b"avro"
    assert b"call-00002" in headers["reason"] and b"\n" not in headers["reason"]
    assert headers["origin"].startswith(f"{settings.calls_topic}/".encode())
    assert sink.dead_letters == 2 and said == []
    # committed: a new sink in the group finds nothing left to store
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        again = CallSink(settings, CallWriter(store))
        for _ in range(5):
            again.step()
        assert again.written == 0
        again.run(lambda: True)


def test_a_store_that_takes_no_writes_holds_the_batch_until_it_does(kafka, topics, tmp_path):
    settings = topics.replace(kafka=kafka)
    dsn = f"chdb://{tmp_path / 'store'}"
    publish(settings, [encode_call_batch("flow", [make_call(i)]) for i in range(5)]).flush(30)
    said: list[str] = []
    store = open_store(dsn)
    sink = CallSink(settings, CallWriter(store), say=said.append)
    store.close()  # every insert now fails, and not because of the calls
    steps_until(sink, lambda: said)
    for _ in range(3):
        assert sink.step() == 0
    assert sink.dead_letters == 0 and sink.written == 0
    assert len(said) == 1 and "waiting for the store to take writes" in said[0]
    with open_store(dsn) as store:
        assert count_calls(store) == 0
        sink.writer = CallWriter(store)
        steps_until(sink, lambda: sink.written == 5)
        assert count_calls(store) == 5
        sink.run(lambda: True)
    assert len(said) == 2 and "back after" in said[1]
    assert read_topic(kafka, settings.calls_topic + DLQ_SUFFIX, within=3) == []


def test_a_broker_restart_is_waited_out_and_every_call_stored_once(topics, tmp_path):
    broker = LocalBroker(home=tmp_path / "kafka", port=_free_port_pair())
    bootstrap = broker.start()
    settings = topics.replace(kafka=bootstrap)
    said: list[str] = []
    stop = threading.Event()
    try:
        producer = publish(settings, [encode_call_batch("f", [make_call(i)]) for i in range(10)])
        producer.flush(30)
        with open_store(f"chdb://{tmp_path / 'store'}") as store:
            sink = CallSink(settings, CallWriter(store), say=said.append)
            failure: list[BaseException] = []

            def run() -> None:
                try:
                    sink.run(stop.is_set)
                except BaseException as ex:  # noqa: BLE001 - the test reports it
                    failure.append(ex)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            _wait(lambda: sink.written >= 10 or failure)
            broker.stop()
            during = [encode_call_batch("f", [make_call(i)]) for i in range(10, 20)]
            publish(settings, during, producer)  # queued until the broker is back
            time.sleep(8)  # the sink meets the outage: consume and commit fail meanwhile
            assert thread.is_alive() and not failure
            broker.start()
            assert producer.flush(60) == 0
            after = [encode_call_batch("f", [make_call(i)]) for i in range(20, 30)]
            assert publish(settings, after, producer).flush(30) == 0
            # (chDB is not thread-safe: the store is read only once the sink has stopped)
            _wait(lambda: sink.written >= 30 or failure, timeout=180)
            stop.set()
            thread.join(60)
            assert not failure, failure
            assert count_calls(store) == 30
            ids = store.client.query("SELECT call_id FROM calls FINAL").result_rows
            assert sorted(i for (i,) in ids) == [f"call-{i:05d}" for i in range(30)]
    finally:
        stop.set()
        broker.stop()
    waits = [line for line in said if "waiting for" in line]
    assert len(waits) == 1 and "Kafka" in waits[0], "\n".join(said)


def _wait(done, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_publisher_and_the_endpoint_follower_wait_out_a_broker_restart(tmp_path):
    broker = LocalBroker(home=tmp_path / "kafka", port=_free_port_pair())
    bootstrap = broker.start()
    segments_topic, endpoints_topic = (f"t{uuid.uuid4().hex[:8]}-{t}" for t in ("seg", "ep"))
    said: list[str] = []
    settings = Settings(kafka=bootstrap)
    publisher = SegmentPublisher(settings, segments_topic, say=said.append)
    directory = Directory()
    follower = EndpointFollower(settings, endpoints_topic, directory, say=said.append)
    endpoints = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 0})

    def add_endpoint(ip: str) -> None:
        endpoint = Endpoint(ip=ip, kind="pod", name=f"pod-{ip}", namespace="default")
        endpoints.produce(endpoints_topic, key=ip.encode(), value=encode_endpoint(endpoint))
        assert endpoints.flush(60) == 0

    try:
        publisher.publish("f", [_segment(0)])
        publisher.flush()
        add_endpoint("10.0.0.1")
        follower.start()
        _wait(lambda: directory.get("10.0.0.1") is not None)
        broker.stop()
        publisher.publish("f", [_segment(1)])  # queued while the broker is away
        time.sleep(8)
        broker.start()
        publisher.publish("f", [_segment(2)])
        publisher.flush()  # waits for the broker, delivers all; raises on any loss
        publisher.publish_end_of_capture()
        add_endpoint("10.0.0.2")
        _wait(lambda: directory.get("10.0.0.2") is not None)
        assert follower.is_alive()
        assert [s.seq for s in _segments_in(bootstrap, segments_topic)] == [0, 1, 2]
    finally:
        follower.stop()
        follower.join(10)
        broker.stop()
    for who in ("capture", "worker endpoints"):
        waits = [line for line in said if line.startswith(f"wiretide {who}: waiting for")]
        assert len(waits) == 1, "\n".join(said)


def test_the_endpoint_follower_sees_a_topic_created_after_it_started(kafka):
    """A worker up before the first endpoint: the producer auto-creates the topic (all its
    partitions at once) and every endpoint, whatever its partition, reaches the worker.
    A topic not there yet is no outage: nothing is said."""
    topic = f"t{uuid.uuid4().hex[:8]}-ep"
    directory = Directory()
    said: list[str] = []
    follower = EndpointFollower(Settings(kafka=kafka), topic, directory, say=said.append)
    follower.start()
    try:
        assert follower.caught_up.wait(60)  # nothing to catch up with: no topic yet
        time.sleep(1)  # it has looked for the topic and not found it
        ips = [f"10.0.1.{i}" for i in range(1, 13)]  # keys on every partition
        producer = Producer({"bootstrap.servers": kafka, "message.timeout.ms": 0})
        for ip in ips:
            endpoint = Endpoint(ip=ip, kind="pod", name=f"pod-{ip}", namespace="default")
            producer.produce(topic, key=ip.encode(), value=encode_endpoint(endpoint))
        assert producer.flush(60) == 0
        _wait(lambda: all(directory.get(ip) is not None for ip in ips))
        assert follower.is_alive() and said == []
    finally:
        follower.stop()
        follower.join(10)


def _segment(seq: int) -> Segment:
    return Segment(1, "10.0.0.1", 1000, "10.0.0.2", 80, seq, 0, 0x18, b"x")


def _segments_in(bootstrap: str, topic: str) -> list[Segment]:
    # 2 s without a message before stopping: a late duplicate would still be read.
    messages = read_topic(bootstrap, topic, within=30, settle=2)
    found = [seg for msg in messages if msg.value() for seg in decode_segment_batch(msg.value())]
    return sorted(found, key=lambda s: s.seq)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 40 MiB tmpfs (root only), unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_holds_the_batch_until_there_is_room(kafka, topics, tiny_disk):
    settings = topics.replace(kafka=kafka)
    publish(settings, [encode_call_batch("flow", [make_call(i)]) for i in range(5)]).flush(30)
    said: list[str] = []
    with open_store(f"chdb://{tiny_disk / 'store'}") as store:
        sink = CallSink(settings, CallWriter(store), say=said.append)
        filler = tiny_disk / "filler"
        with filler.open("wb") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * (1 << 20))
        steps_until(sink, lambda: said)
        for _ in range(3):
            assert sink.step() == 0
        assert sink.written == sink.dead_letters == 0 and len(said) == 1
        assert "waiting for the store" in said[0] and "not enough space" in said[0].lower()
        filler.unlink()
        steps_until(sink, lambda: sink.written == 5)
        assert count_calls(store) == 5
        sink.run(lambda: True)
    assert read_topic(kafka, settings.calls_topic + DLQ_SUFFIX, within=3) == []
