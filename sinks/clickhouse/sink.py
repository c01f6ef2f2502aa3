"""Kafka → ClickHouse: batch calls, insert, then commit offsets (never the other way).

Never stop, never leak:
* a batch's messages are stored as they came (encoded.py: no Python per call) and
  decoded only when the store does not take them so; the batch is bounded by calls
  (max_rows) and bytes (max_bytes), and so is what the consumer fetches ahead;
* an insert costs ~0.1 s of CPU whatever its size (embedded chDB, 50 calls: about a
  third each the two views' analysis, red_totals and service_map, the rest the query
  and its checks and the part), so a backlog (messages already waiting when a batch
  would be stored) is gathered up to backlog_rows calls (still within max_bytes) and
  drains in few big inserts; caught up, a batch is stored after max_wait_s, which
  keeps a live call's wait to be queryable short. backlog_rows is 25k, not more: past
  it the fixed cost is ~4 us a call and falling slowly, while the insert's peak memory
  (on top of chDB's ~300 MB once open) and the time the hub's reads wait behind it
  keep growing (bench/bench_sink.py --sizes);
* a message that is not a CallBatch, and a call the writer rejects for its data (see
  writer.py), go to `<calls topic>.dlq` with the reason; the rest of the batch is stored;
* a store that takes no writes holds the batch (partitions paused, nothing committed,
  nothing dead-lettered) and is retried with backoff; said once;
* a broker outage (consumer, commit, dead-letter producer) is waited out with backoff;
  said once. Offsets are committed only after the batch is stored and its dead letters
  are delivered, so a crash or a lost commit replays it, and the table collapses replays;
  a batch that may be a replay (in_flight.py) is written so that the calls already stored
  are skipped, and the views on the table (RED totals, service map) count each call once.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    Producer,
)

from schemas.codec import CodecError
from schemas.config import DLQ_SUFFIX, Settings
from schemas.records import ApiCall
from schemas.runtime import health
from schemas.runtime.metrics import DEAD_LETTERS, SINK_BATCH_ROWS, SINK_INSERT_SECONDS, SINK_ROWS
from schemas.runtime.outage import (
    Outage,
    PartitionHold,
    commit_through_outages,
    owned_messages,
    transient,
)
from schemas.runtime.sink_status import SinkStatus
from schemas.serde import RejectedCall, call_batch_records, decode_call_batch
from sinks.clickhouse.encoded import EncodedCalls, NotTaken
from sinks.clickhouse.in_flight import InFlight
from sinks.clickhouse.writer import CallWriter, StoreUnavailable
from sinks.errors import SinkError, one_line

_SLICE_S = 0.05  # the longest one consume() waits while a batch fills


class CallSink:
    """Consume `wiretide.calls` in a consumer group and store each batch idempotently."""

    def __init__(
        self,
        settings: Settings,
        writer: CallWriter,
        *,
        status: SinkStatus | None = None,
        max_rows: int = 10_000,
        max_wait_s: float = 0.25,  # a live call's wait to be queryable (bench_latency.py)
        max_bytes: int = 32 * 1024 * 1024,
        backlog_rows: int = 25_000,  # see the module notes
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.writer = writer
        self.settings = settings
        self.status = status  # reported in the data dir with this sink's counts; None: not
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.max_bytes = max_bytes
        self.backlog_rows = max(backlog_rows, max_rows)
        self.written = 0
        self.dead_letters = 0
        self._kafka = Outage("sink", say=say)
        self._store = Outage("sink", say=say)
        self._consumer = Consumer(
            {
                **settings.kafka_client(),
                "group.id": settings.sink_group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # What is fetched ahead is memory too: about one batch (max_bytes).
                "fetch.max.bytes": 16 * 1024 * 1024,
                "queued.max.messages.kbytes": 16 * 1024,
                "session.timeout.ms": 10000,
                "log_level": 2,  # broker-down noise: the outage is said once, below
                "error_cb": self._on_kafka_error,
            }
        )
        self._dlq = Producer(
            settings.kafka_client(
                acks="all",
                **{"enable.idempotence": True, "message.timeout.ms": 0},  # 0: wait out outages
                log_level=2,
                error_cb=self._on_kafka_error,
            )
        )
        self._dlq_failed: list[str] = []
        # What was consumed but not yet stored and committed (see `_flush`): messages
        # as they came with (key, origin) each, decoded calls with the origin of each.
        self._encoded: list[tuple[bytes, int, int, int]] = []
        self._encoded_from: list[tuple[bytes | None, str]] = []
        self._pending: list[ApiCall] = []
        self._origin: dict[str, str] = {}
        self._rows = self._bytes = 0  # calls and message bytes pending
        self._oldest: float | None = None  # when the first message pending was produced
        self._consumed = False
        # Partitions paused while the store is unavailable. Store and commit before
        # partitions move, so their next owner starts after what this writer stored
        # (with one store per writer, it would store them again).
        self._hold = PartitionHold(self._store)
        self._flight = InFlight()  # the pending batch's offsets; is it a replay?
        self._consumer.subscribe(
            [settings.calls_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            self.step()
        self._consumer.close()

    def step(self) -> int:
        """Take one batch (see `_fill`), store it, commit. Returns rows stored."""
        health.beat("sink", self.settings.data)
        if self._hold.held:  # the store was unavailable: poll (stay in the group), retry
            self._take(self._hold.wait(self._consumer))
        else:
            self._fill()
        try:
            stored = self._flush()
        except StoreUnavailable as ex:
            self._store.waiting(f"the store to take writes ({ex})")
            self._flight.maybe_stored = True  # in part, maybe: retried as a replay
            self._hold.hold(self._consumer)
            return 0
        self._hold.release(self._consumer)
        self._store.over()
        return stored

    def _fill(self) -> None:
        """Gather a batch: max_rows calls, or what came until the oldest call pending is
        max_wait_s old (from when it was produced: what waited during the last insert,
        or in the worker, is not held for a whole max_wait_s more); then what is already
        waiting (a backlog) joins it, up to backlog_rows calls."""
        deadline = time.monotonic() + self.max_wait_s
        while self._rows < self.max_rows and self._bytes < self.max_bytes:
            if self._oldest is not None:
                deadline = min(deadline, self._oldest + self.max_wait_s)
            left = deadline - time.monotonic()
            if left < 0.001:  # librdkafka counts whole milliseconds
                break
            want = min(100, self.max_rows - self._rows)
            # In slices: consume() waits out its whole timeout unless `want` came, and
            # a call that came (and already waited) may move the deadline closer.
            self._take(self._consumer.consume(num_messages=want, timeout=min(left, _SLICE_S)))
        while self._rows < self.backlog_rows and self._bytes < self.max_bytes:
            taken = self._bytes
            want = min(100, self.backlog_rows - self._rows)
            self._take(self._consumer.consume(num_messages=want, timeout=0))
            if self._bytes == taken:
                break  # nothing (more) was waiting

    def _take(self, messages: list) -> None:
        for msg in owned_messages(messages, self._hold.owned, self._kafka, SinkError):
            self._consumed = True
            self._flight.took(msg.partition(), msg.offset())
            if self._oldest is None:
                self._oldest = _produced_at(msg)
            origin = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
            value = msg.value()
            self._bytes += len(value or b"")
            records = call_batch_records(value)
            if records is None:
                self._decode(msg.key(), value, origin)
            else:
                self._encoded.append((value, *records))
                self._encoded_from.append((msg.key(), origin))
                self._rows += records[0]

    def _decode(self, key: bytes | None, value: bytes, origin: str) -> None:
        """The message's calls pending as calls, or the message dead-lettered."""
        try:
            calls = decode_call_batch(value)
        except Exception as exc:  # CodecError; anything else a foreign value raises
            reason = str(exc) if isinstance(exc, CodecError) else one_line(exc)
            self._dead_letter(key, value, reason, origin, "original")
            return
        self._pending.extend(calls)
        self._rows += len(calls)
        for call in calls:
            self._origin[call.call_id] = origin

    def _store_encoded(self) -> int:
        """Store the messages pending as they came; those the store does not take so
        are decoded and pending as calls. Returns the calls stored."""
        encoded, came_from = self._encoded, self._encoded_from
        self._encoded, self._encoded_from = [], []
        try:
            with SINK_INSERT_SECONDS.time():
                self.writer.write(EncodedCalls(encoded), replay=self._flight.replay())
        except NotTaken:
            self._flight.maybe_stored = True  # the failed insert may have stored part
            self._rows -= sum(count for _, count, _, _ in encoded)
            for (value, *_), (key, origin) in zip(encoded, came_from, strict=True):
                self._decode(key, value, origin)
            return 0
        stored = sum(count for _, count, _, _ in encoded)
        self.written += stored
        _count_insert(stored)
        return stored

    def _flush(self) -> int:
        """Store what is pending, dead-letter what the store rejects, then commit the
        positions consumed (never the other way)."""
        if not self._consumed:
            return 0
        self._flight.mark(self._consumer, self.settings.calls_topic)
        from_encoded = self._store_encoded() if self._encoded else 0
        calls = self._pending
        rejected: list[RejectedCall] = self._write_decoded(calls) if calls else []
        for bad in rejected:
            value, form = bad.dead_letter_value()
            origin = self._origin.get(bad.call.call_id, "")
            self._dead_letter(bad.call.flow_id.encode(), value, bad.reason, origin, form)
        self._deliver_dead_letters()
        self._commit()
        self._flight.stored()
        self._clear()
        stored = len({call.call_id for call in calls}) - len(rejected)
        self.written += stored
        self._report()
        return from_encoded + stored

    def _write_decoded(self, calls: list[ApiCall]) -> list[RejectedCall]:
        with SINK_INSERT_SECONDS.time():
            rejected = self.writer.write(calls, replay=self._flight.replay())
        _count_insert(len(calls) - len(rejected))
        return rejected

    def _clear(self) -> None:
        self._encoded, self._encoded_from, self._pending, self._origin = [], [], [], {}
        self._rows = self._bytes = 0
        self._oldest = None
        self._consumed = False
        self._flight.dropped()

    def _commit(self) -> None:
        """Commit the consumed positions, waiting out a broker or coordinator outage."""
        commit_through_outages(
            self._consumer, self._kafka, lambda: health.beat("sink", self.settings.data)
        )

    def _deliver_dead_letters(self) -> None:
        """Every dead letter delivered before the commit, however long Kafka is away."""
        while self._dlq.flush(1.0):
            self._kafka.waiting("Kafka to take the dead letters")
            health.beat("sink", self.settings.data)
        if self._dlq_failed:
            raise SinkError(f"cannot deliver a dead letter: {self._dlq_failed[0]}")

    def _on_assign(self, consumer: Consumer, partitions: list) -> None:
        self._hold.assigned(consumer, partitions)
        self._flight.assigned(consumer, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list) -> None:
        try:
            self._flush()
        except StoreUnavailable:
            # Nothing stored, nothing committed: their next owner reads them again.
            self._clear()
        self._hold.revoked(partitions)

    def _on_kafka_error(self, err: KafkaError) -> None:
        if transient(err):
            self._kafka.waiting(f"Kafka ({err.str()})")

    def _on_dead_letter_delivery(self, err: KafkaError | None, msg: object) -> None:
        if err is not None:
            self._dlq_failed.append(err.str())

    def _dead_letter(
        self, key: bytes | None, value: bytes, reason: str, origin: str, form: str
    ) -> None:
        self.dead_letters += 1
        DEAD_LETTERS.labels("sink", self.settings.calls_topic + DLQ_SUFFIX).inc()
        self._dlq.produce(
            self.settings.calls_topic + DLQ_SUFFIX,
            key=key,
            value=value,
            headers={"reason": reason.encode(), "origin": origin.encode(), "format": form.encode()},
            on_delivery=self._on_dead_letter_delivery,
        )
        self._dlq.poll(0)

    def _report(self) -> None:
        if self.status is not None:
            counts = {"written": self.written, "dead_letters": self.dead_letters}
            status = dataclasses.replace(self.status, **counts, pid=os.getpid())
            status.write(self.settings.data)


def _produced_at(msg: object) -> float:
    """When `msg` was produced, on this process's monotonic clock (now when the message
    carries no time; never later than now, whatever the producer's clock said)."""
    kind, ms = msg.timestamp()
    now = time.monotonic()
    if kind == TIMESTAMP_NOT_AVAILABLE or ms <= 0:
        return now
    return now - max(0.0, time.time() - ms / 1000)


def _count_insert(rows: int) -> None:
    SINK_ROWS.inc(rows)
    SINK_BATCH_ROWS.observe(rows)
