"""Create Wiretide's topics (idempotent) with the partition count and retention they need."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.config import DLQ_SUFFIX, Settings
from schemas.errors import BrokerError

_HOUR_MS = 3600 * 1000


def ensure_topics(settings: Settings, partitions: int | None = None) -> None:
    """`partitions` (default: the settings') for the segments, calls and violations topics."""
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
        NewTopic(settings.segments_topic + DLQ_SUFFIX, 1, 1),
        NewTopic(settings.calls_topic + DLQ_SUFFIX, 1, 1),
    ]
    try:
        existing = admin.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.kafka}: {exc}") from None
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return
    for topic, fut in admin.create_topics(missing, operation_timeout=30).items():
        try:
            fut.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BrokerError(f"cannot create topic {topic}: {exc}") from None
