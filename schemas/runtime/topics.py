"""Create Wiretide's topics (idempotent) with the partition count and retention they need."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from schemas.config import DLQ_SUFFIX, Settings
from schemas.errors import BrokerError

_HOUR_MS = 3600 * 1000
KAFKA_DEFAULT_METADATA_MAX = 4096  # offset.metadata.max.bytes when a broker does not say
REACH_S = 60.0  # how long a start waits for an unreachable broker
WIRE_METADATA_MAX = 32767  # an OffsetCommit's metadata is a string with an int16 length


def ensure_topics(
    settings: Settings,
    partitions: int | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """`partitions` (default: the settings') for the segments, calls and violations topics.
    An existing topic with fewer is grown (more workers need more; Kafka only ever adds
    partitions), said in one line; one with more is left as it is. A flow open while a
    running pipeline's topics grow may hash to another partition, and so to another
    worker, mid-connection: grow them before the workers start, as a tap does."""
    partitions = partitions or settings.partitions
    admin = AdminClient(settings.kafka_client(log_level=3))
    wanted = [
        NewTopic(
            settings.segments_topic,
            partitions,
            1,
            config={"retention.ms": str(_HOUR_MS), "max.message.bytes": "16777216"},
        ),
        NewTopic(settings.calls_topic, partitions, 1, config={"max.message.bytes": "16777216"}),
        NewTopic(settings.endpoints_topic, 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic(settings.violations_topic, partitions, 1),
        NewTopic(settings.coverage_topic, 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic(settings.segments_topic + DLQ_SUFFIX, 1, 1),
        NewTopic(settings.calls_topic + DLQ_SUFFIX, 1, 1),
    ]
    existing = _list_topics(admin, settings.kafka, say or _stderr)
    missing = [t for t in wanted if t.topic not in existing]
    if missing:
        for topic, fut in admin.create_topics(missing, operation_timeout=30).items():
            try:
                fut.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise BrokerError(f"cannot create topic {topic}: {exc}") from None
    have = {name: len(meta.partitions) for name, meta in existing.items()}
    _grow(admin, _to_grow(wanted, have), say)


def _list_topics(admin: AdminClient, kafka: str, say: Callable[[str], None]) -> dict:
    """The broker's topics, waiting up to REACH_S for it: a broker that is starting or
    restarting (a chaos fault, a node under load) is not yet a reason to give up."""
    deadline = time.monotonic() + REACH_S
    waited = False
    while True:
        try:
            return admin.list_topics(timeout=3).topics
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise BrokerError(f"cannot reach Kafka at {kafka}: {exc}") from None
            if not waited:
                say(f"wiretide: waiting for Kafka at {kafka} (up to {REACH_S:.0f} s)")
                waited = True
            time.sleep(1)


def _to_grow(wanted: list[NewTopic], have: dict[str, int]) -> dict[str, tuple[int, int]]:
    """topic -> (partitions it has, partitions wanted), for the existing topics with fewer."""
    return {
        t.topic: (have[t.topic], t.num_partitions)
        for t in wanted
        if 0 < have.get(t.topic, 0) < t.num_partitions
    }


def _grow(
    admin: AdminClient, grow: dict[str, tuple[int, int]], say: Callable[[str], None] | None
) -> None:
    if not grow:
        return
    asked = [NewPartitions(topic, new) for topic, (_, new) in grow.items()]
    for topic, fut in admin.create_partitions(asked, operation_timeout=30).items():
        try:
            fut.result()
        except KafkaException as exc:
            # Another process may have grown it first (a second tap, a worker starting).
            if _partition_count(admin, topic) < grow[topic][1]:
                raise BrokerError(f"cannot add partitions to topic {topic}: {exc}") from None
    growth = ", ".join(f"{topic} {old} -> {new}" for topic, (old, new) in grow.items())
    (say or _stderr)(f"wiretide: more partitions for more workers: {growth}")


def _partition_count(admin: AdminClient, topic: str) -> int:
    try:
        meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    except KafkaException:
        return 0
    return len(meta.partitions) if meta is not None and meta.error is None else 0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def commit_metadata_limit(settings: Settings) -> int:
    """How long a commit's metadata (a worker's checkpoint of open flows) may be: the
    broker's offset.metadata.max.bytes, at most what the wire carries; Kafka's default when
    the broker does not answer."""
    admin = AdminClient(settings.kafka_client(log_level=3))
    try:
        brokers = admin.list_topics(timeout=10).brokers
        resource = ConfigResource(ConfigResource.Type.BROKER, str(min(brokers)))
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
        return min(int(configs["offset.metadata.max.bytes"].value), WIRE_METADATA_MAX)
    except (KafkaException, KeyError, ValueError, TypeError, TimeoutError):
        return KAFKA_DEFAULT_METADATA_MAX
