"""Create Wiretide's topics (idempotent) with the partition count and retention they need."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import config
from schemas.errors import BrokerError

_HOUR_MS = 3600 * 1000


def ensure_topics(bootstrap: str, partitions: int | None = None) -> None:
    partitions = partitions or config.partitions()
    admin = AdminClient(config.kafka_client(bootstrap, log_level=3))
    wanted = [
        NewTopic(
            config.SEGMENTS_TOPIC,
            partitions,
            1,
            config={"retention.ms": str(_HOUR_MS), "max.message.bytes": "16777216"},
        ),
        NewTopic(config.CALLS_TOPIC, partitions, 1, config={"max.message.bytes": "16777216"}),
        NewTopic(config.ENDPOINTS_TOPIC, 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic(config.VIOLATIONS_TOPIC, partitions, 1),
        NewTopic(config.SEGMENTS_TOPIC + config.DLQ_SUFFIX, 1, 1),
        NewTopic(config.CALLS_TOPIC + config.DLQ_SUFFIX, 1, 1),
    ]
    try:
        existing = admin.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return
    for topic, fut in admin.create_topics(missing, operation_timeout=30).items():
        try:
            fut.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BrokerError(f"cannot create topic {topic}: {exc}") from None
