"""Follow the compacted endpoints topic into a `Directory`: a daemon thread with its own
consumer that reads every partition from the beginning (no group: every worker needs
every endpoint) and keeps up with changes."""

from __future__ import annotations

import threading
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from schemas.codec import CodecError
from streams.enrich import Directory
from wiretide import config
from wiretide.serde import decode_endpoint


class EndpointFollower(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, directory: Directory) -> None:
        super().__init__(name="endpoint-follower", daemon=True)
        self.topic = topic
        self.directory = directory
        self.undecodable = 0
        self._stop_event = threading.Event()
        self._consumer = Consumer(
            {
                **config.kafka_client(bootstrap),
                "group.id": f"wiretide-endpoints-{uuid.uuid4().hex}",  # never commits
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )

    def run(self) -> None:
        consumer = self._consumer
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            parts = list(meta.partitions) if meta and not meta.error else [0]
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            while not self._stop_event.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                self.apply(msg.key(), msg.value())
        except KafkaException:
            pass  # enrichment is best effort; calls still flow without identity
        finally:
            consumer.close()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a tombstone: the IP is gone
            if key:
                self.directory.remove(key.decode())
            return
        try:
            self.directory.update(decode_endpoint(value))
        except CodecError:
            self.undecodable += 1

    def stop(self) -> None:
        self._stop_event.set()
