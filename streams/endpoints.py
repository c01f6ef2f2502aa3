"""Follow the compacted endpoints topic into a `Directory`: a daemon thread with its own
consumer that reads every partition from the beginning (no group: every worker needs
every endpoint) and keeps up with changes. A broker outage, at start or later, is waited
out with backoff and said once; calls flow without identity meanwhile."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.codec import CodecError
from schemas.config import Settings
from schemas.runtime.outage import Outage, transient
from schemas.serde import decode_endpoint
from streams.enrich import Directory


class EndpointFollower(threading.Thread):
    def __init__(
        self,
        settings: Settings,
        topic: str,
        directory: Directory,
        *,
        say: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="endpoint-follower", daemon=True)
        self.topic = topic
        self.directory = directory
        self.undecodable = 0
        self.outage = Outage("worker endpoints", say=say)
        self.caught_up = threading.Event()  # set once what the topic held at start is in
        self._stop_event = threading.Event()
        self._consumer = Consumer(
            {
                **settings.kafka_client(),
                "group.id": f"wiretide-endpoints-{uuid.uuid4().hex}",  # never commits
                "enable.auto.commit": False,
                "log_level": 2,  # an unreachable broker is said once, by `outage`
                "error_cb": self._on_error,
            }
        )

    def _on_error(self, err: KafkaError) -> None:
        if transient(err):
            self.outage.waiting(f"Kafka ({err.str()})")

    def _where_the_topic_ends(self) -> dict[int, int]:
        """{partition: end offset} of the topic now (its partitions with records), retried
        until the broker answers or the follower stops."""
        consumer = self._consumer
        while True:
            try:
                meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
                parts = list(meta.partitions) if meta and not meta.error else [0]
                ends = {}
                for p in parts:
                    _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), 10)
                    ends[p] = high
                return ends
            except KafkaException as exc:
                err = exc.args[0]
                if not transient(err) or self._stop_event.is_set():
                    raise
                self.outage.waiting(f"Kafka ({err.str()})")
                self._stop_event.wait(self.outage.next_delay())

    def run(self) -> None:
        consumer = self._consumer
        try:
            ends = self._where_the_topic_ends()
            self.outage.over()
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
            ends = {p: high for p, high in ends.items() if high > 0}
            if not ends:
                self.caught_up.set()
            while not self._stop_event.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    if transient(msg.error()):
                        self.outage.waiting(f"Kafka ({msg.error().str()})")
                    continue
                self.outage.over()
                self.apply(msg.key(), msg.value())
                if not self.caught_up.is_set() and msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
                    if not ends:
                        self.caught_up.set()
        except KafkaException:
            pass  # not an outage (say, no such topic): calls flow without identity
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
