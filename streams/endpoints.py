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
        self.caught_up = threading.Event()  # set once what the topic held at start is in
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
            ends = {}
            for p in parts:
                _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), 10)
                if high > 0:
                    ends[p] = high
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            if not ends:
                self.caught_up.set()
            while not self._stop_event.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                self.apply(msg.key(), msg.value())
                if not self.caught_up.is_set() and msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
                    if not ends:
                        self.caught_up.set()
        except KafkaException:
            pass  # enrichment is best effort; calls still flow without identity
        finally:
            self.caught_up.set()
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
