"""Follow the compacted endpoints topic into a `Directory`: a daemon thread with its own
consumer that reads every partition from the beginning (no group: every worker needs
every endpoint) and keeps up with changes. A broker outage, at start or later, is waited
out with backoff and said once; calls flow without identity meanwhile.

The partitions are not fixed at start: a topic that does not exist yet (the worker came
up before the first endpoint was published and auto-created it) or that gains
partitions is looked up again, and each partition first seen is read from its
beginning, so no endpoint is missed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.codec import CodecError
from schemas.config import Settings
from schemas.runtime.outage import Outage, transient
from schemas.serde import decode_endpoint
from streams.enrich import Directory

# How often the topic's partitions are looked up again: soon while it has none (the
# first endpoint is on its way), rarely once it has (partitions are added by hand).
LOOK_AGAIN_EMPTY_S = 1.0
LOOK_AGAIN_S = 30.0


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
        self._assigned: set[int] = set()
        self._consumer = Consumer(
            {
                **settings.kafka_client(),
                "group.id": f"wiretide-endpoints-{uuid.uuid4().hex}",  # never commits
                "enable.auto.commit": False,
                # Should a position ever be reset (a broker that lost a log), re-read
                # from the start: a reset to the end would skip endpoints for good.
                "auto.offset.reset": "earliest",
                "log_level": 2,  # an unreachable broker is said once, by `outage`
                "error_cb": self._on_error,
            }
        )

    def _on_error(self, err: KafkaError) -> None:
        if transient(err):
            self.outage.waiting(f"Kafka ({err.str()})")

    def _partitions(self, timeout: float) -> list[int]:
        """The topic's partitions now; none while it does not exist."""
        meta = self._consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        return sorted(meta.partitions) if meta is not None else []

    def _where_the_topic_ends(self) -> dict[int, int]:
        """{partition: end offset} of the topic now ({} while it does not exist),
        retried until the broker answers or the follower stops."""
        consumer = self._consumer
        while True:
            try:
                ends = {}
                for p in self._partitions(timeout=10):
                    _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), 10)
                    ends[p] = high
                return ends
            except KafkaException as exc:
                err = exc.args[0]
                if not transient(err) or self._stop_event.is_set():
                    raise
                self.outage.waiting(f"Kafka ({err.str()})")
                self._stop_event.wait(self.outage.next_delay())

    def _follow(self, partitions: list[int]) -> None:
        """Read the partitions not yet followed from their beginning."""
        new = [p for p in partitions if p not in self._assigned]
        if new:
            self._consumer.incremental_assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new]
            )
            self._assigned.update(new)

    def _look_again(self) -> None:
        """Follow partitions that appeared since; an outage is said by poll/error_cb."""
        try:
            self._follow(self._partitions(timeout=5))
        except KafkaException:
            pass

    def _next_look(self) -> float:
        return time.monotonic() + (LOOK_AGAIN_S if self._assigned else LOOK_AGAIN_EMPTY_S)

    def run(self) -> None:
        consumer = self._consumer
        try:
            ends = self._where_the_topic_ends()
            self.outage.over()
            self._follow(list(ends))
            ends = {p: high for p, high in ends.items() if high > 0}
            if not ends:
                self.caught_up.set()
            next_look = self._next_look()
            while not self._stop_event.is_set():
                if time.monotonic() >= next_look:
                    self._look_again()
                    next_look = self._next_look()
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
            pass  # not an outage: calls flow without identity
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
