"""ensure_topics against a real broker: a tap (or a cluster) that asks for more partitions
than the topics of an earlier run have gets them, said in one line; one that asks for
fewer leaves them as they are (Kafka cannot take partitions away, and the records in
them would be lost)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from schemas.config import DLQ_SUFFIX, Settings
from schemas.runtime.topics import ensure_topics
from wiretide.broker import LocalBroker, free_port_pair


def partition_counts(settings: Settings) -> dict[str, int]:
    topics = AdminClient({"bootstrap.servers": settings.kafka}).list_topics(timeout=10).topics
    ours = {name: meta for name, meta in topics.items() if name.startswith(settings.prefix)}
    return {name: len(meta.partitions) for name, meta in ours.items()}


def test_more_workers_grow_the_partitions_and_fewer_never_shrink_them(kafka: str) -> None:
    settings = Settings(prefix=f"t{uuid.uuid4().hex[:8]}-", kafka=kafka)
    said: list[str] = []
    ensure_topics(settings, partitions=2, say=said.append)
    assert said == []  # created, not grown
    grown = (settings.segments_topic, settings.calls_topic, settings.violations_topic)
    single = (
        settings.endpoints_topic,
        settings.coverage_topic,
        settings.segments_topic + DLQ_SUFFIX,
        settings.calls_topic + DLQ_SUFFIX,
    )
    assert partition_counts(settings) == {**dict.fromkeys(grown, 2), **dict.fromkeys(single, 1)}

    ensure_topics(settings, partitions=6, say=said.append)  # a later tap with more workers
    assert partition_counts(settings) == {**dict.fromkeys(grown, 6), **dict.fromkeys(single, 1)}
    (line,) = said
    assert "\n" not in line
    for topic in grown:
        assert f"{topic} 2 -> 6" in line
    assert not any(topic in line for topic in single)

    said.clear()
    ensure_topics(settings, partitions=3, say=said.append)  # fewer: left as they are
    ensure_topics(settings, partitions=6, say=said.append)  # as many: nothing to do
    assert said == []
    assert partition_counts(settings) == {**dict.fromkeys(grown, 6), **dict.fromkeys(single, 1)}


def test_a_start_waits_for_a_broker_that_is_still_starting(tmp_path: Path) -> None:
    """An agent or worker started before its broker (a node booting, a broker restarting)
    says it waits, once, and goes on when the broker answers, instead of exiting."""
    port = free_port_pair()
    settings = Settings(prefix="t-", kafka=f"127.0.0.1:{port}")
    said: list[str] = []
    failed: list[BaseException] = []

    def start() -> None:
        try:
            ensure_topics(settings, partitions=2, say=said.append)
        except BaseException as ex:  # noqa: BLE001 - reported by the assertion below
            failed.append(ex)

    waiting = threading.Thread(target=start)
    waiting.start()
    time.sleep(4)  # past its first try (3 s)
    broker = LocalBroker(home=tmp_path / "kafka", port=port)
    try:
        broker.start()
        waiting.join(120)
        assert not waiting.is_alive() and not failed, failed
        assert said == [f"wiretide: waiting for Kafka at 127.0.0.1:{port} (up to 60 s)"]
        assert partition_counts(settings)[settings.calls_topic] == 2
    finally:
        broker.stop()
