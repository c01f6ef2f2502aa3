"""Storing the results a run could only put on Kafka: a replay started while a tap or
hub held the embedded store writes its results to `wiretide.replay` alone, so the store's
owner (the hub) catches up from the topic before it answers about runs.

`TopicCatchUp(settings, store_results).catch_up()` reads what is new on the topic (its
own consumer group remembers where it stopped), hands the results over to be stored and
commits. The table collapses a result stored twice (by the run and from the topic).
Partitions are assigned, not subscribed: no group join, so a catch-up costs a fetch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from schemas.codec import CodecError
from schemas.config import Settings
from schemas.replay import ReplayResult
from schemas.serde import decode_replay_result
from wiretide.replay.results import replay_topic

_log = logging.getLogger("wiretide.replay")
GROUP = "wiretide-replay-store"
RETRY_AFTER_S = 30.0  # after Kafka failed a catch-up, answer from the store alone


class TopicCatchUp:
    def __init__(
        self, settings: Settings, store_results: Callable[[list[ReplayResult]], None]
    ) -> None:
        self._settings = settings
        self._store = store_results
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()
        self.skipped = 0  # messages that were not ReplayResults
        self._quiet_until = 0.0

    def catch_up(self, max_s: float = 5.0) -> int:
        """Store what is new on the topic (for at most about `max_s`); the number stored.
        Kafka trouble is logged, not raised: the store still answers with what it has."""
        with self._lock:
            if time.monotonic() < self._quiet_until:
                return 0
            try:
                return self._catch_up(max_s)
            except KafkaException as ex:
                _log.warning("replay results: cannot read %s: %s", replay_topic(self._settings), ex)
                self._close()
                self._quiet_until = time.monotonic() + RETRY_AFTER_S  # no wait on each request
                return 0

    def _catch_up(self, max_s: float) -> int:
        consumer = self._consumer or self._open()
        if consumer is None:
            return 0
        stored, deadline = 0, time.monotonic() + max_s
        while time.monotonic() < deadline:
            messages = consumer.consume(num_messages=500, timeout=0.3)
            batch = [r for r in map(self._decode, messages) if r is not None]
            if batch:
                self._store(batch)
                stored += len(batch)
            if messages:
                consumer.commit(asynchronous=False)
            else:
                break
        return stored

    def _decode(self, message) -> ReplayResult | None:  # noqa: ANN001 - a Kafka message
        if message.error() is not None:
            return None
        try:
            return decode_replay_result(message.value())
        except CodecError:
            self.skipped += 1
            return None

    def _open(self) -> Consumer | None:
        topic = replay_topic(self._settings)
        consumer = Consumer(
            {
                **self._settings.kafka_client(),
                "group.id": self._settings.prefix + GROUP,
                "enable.auto.commit": False,
                "log_level": 2,
            }
        )
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            consumer.close()  # no run has written results yet
            return None
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        committed = consumer.committed(parts, timeout=10)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
        consumer.assign(committed)
        self._consumer = consumer
        return consumer

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def close(self) -> None:
        with self._lock:
            self._close()
