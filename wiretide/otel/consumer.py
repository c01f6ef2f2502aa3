"""The calls topic -> OTLP: consume a batch, export its spans, then commit (never the
other way).

* Offsets are committed only after the collector took the batch, so a crash or an
  unreachable collector replays the batch; replayed calls give the same trace and span
  ids (see context.py), so a backend sees a replay as the same spans.
* A collector that does not take the batch holds it: partitions paused (the consumer
  stays in its group), nothing committed, the export retried with backoff, said once.
* A Kafka outage is waited out with backoff, said once.
* A message that is not a call batch is skipped (the sink dead-letters it), said once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError

from schemas.config import Settings
from schemas.errors import WiretideError
from schemas.runtime import health
from schemas.runtime.outage import (
    Outage,
    PartitionHold,
    commit_through_outages,
    owned_messages,
    transient,
)
from schemas.serde import decode_call_batch
from wiretide.otel.context import sampled
from wiretide.otel.sdk import OtlpOut, SpanBuilder
from wiretide.otel.spans import call_spans

GROUP = "wiretide-otel"


class CallExporter:
    """Consume the calls topic in the `<prefix>wiretide-otel` group and export every
    (sampled) call as a client and a server span."""

    def __init__(
        self,
        settings: Settings,
        out: OtlpOut,
        *,
        sample: float = 1.0,
        batch: int = 512,
        max_wait_s: float = 1.0,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.out = out
        self.sample = sample
        self.batch = batch
        self.max_wait_s = max_wait_s
        self.calls = self.exported = self.skipped = 0
        self._say = say or (lambda line: None)
        self._kafka = Outage("otel", say=say)
        self._collector = Outage("otel", say=say)
        self._builder = SpanBuilder()
        self._pending: list = []  # SDK spans of what was consumed and not yet committed
        self._consumed = False
        self._hold = PartitionHold(self._collector)
        self._consumer = Consumer(
            {
                **settings.kafka_client(),
                "group.id": settings.prefix + GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": 10000,
                "log_level": 2,
                "error_cb": self._on_kafka_error,
            }
        )
        self._consumer.subscribe(
            [settings.calls_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def run(self, should_stop: Callable[[], bool]) -> None:
        try:
            while not should_stop():
                self.step()
            if self._consumed and self._export():  # what was taken before the stop
                self._commit()
        finally:
            self._consumer.close()

    def step(self) -> int:
        """Take a batch (or, while the collector is away, wait), export it, commit.
        Returns the spans exported."""
        health.beat("otel", self.settings.data)
        if self._hold.held:
            self._hold.wait(self._consumer)
        elif not self._consumed:
            self._fill()
        if not self._consumed:  # nothing held back (a rebalance may have dropped it)
            self._hold.release(self._consumer)
            return 0
        count = len(self._pending)
        if not self._export():
            self._hold.hold(self._consumer)
            return 0
        self._hold.release(self._consumer)
        self._commit()
        return count

    def _fill(self) -> None:
        """Gather `batch` calls, or what came within max_wait_s (whole messages: a
        message's offset is committed whole)."""
        deadline = time.monotonic() + self.max_wait_s
        taken = self.calls
        while self.calls - taken < self.batch:
            left = deadline - time.monotonic()
            if left < 0.001:  # librdkafka counts whole milliseconds
                break
            self._take(self._consumer.consume(num_messages=16, timeout=left))

    def _take(self, messages: list) -> None:
        for msg in owned_messages(messages, self._hold.owned, self._kafka, WiretideError):
            self._consumed = True
            try:
                calls = decode_call_batch(msg.value())
            except Exception:  # CodecError, or whatever a foreign value raises
                if not self.skipped:
                    self._say(
                        f"wiretide otel: skipping a message that is not a call batch "
                        f"({msg.topic()}/{msg.partition()}/{msg.offset()})"
                    )
                self.skipped += 1
                continue
            self.calls += len(calls)
            for call in calls:
                spans = call_spans(call)
                if sampled(spans[0].trace_id, self.sample):
                    self._builder.add(spans)
        self._pending.extend(self._builder.take())

    def _export(self) -> bool:
        """Send what is pending, `batch` calls (two spans each) per request; False (and
        said once) when the collector did not take it all. What it took is not sent again."""
        size = 2 * self.batch
        while self._pending:
            chunk = self._pending[:size]
            why = self.out.send(chunk)
            if why is not None:
                self._collector.waiting(f"the collector at {self.out.endpoint.url} ({why})")
                return False
            self.exported += len(chunk)
            del self._pending[:size]
        self._collector.over()
        self._consumed = False
        return True

    def _commit(self) -> None:
        """Commit the consumed positions, waiting out a broker or coordinator outage."""
        commit_through_outages(
            self._consumer, self._kafka, lambda: health.beat("otel", self.settings.data)
        )

    def _on_assign(self, consumer: Consumer, partitions: list) -> None:
        self._hold.assigned(consumer, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list) -> None:
        # Export and commit before partitions move; if the collector is away, drop the
        # batch: their next owner reads it again (with the same span ids).
        if self._consumed and self._export():
            self._commit()
        self._pending, self._consumed = [], False
        self._hold.revoked(partitions)

    def _on_kafka_error(self, err: KafkaError) -> None:
        if transient(err):
            self._kafka.waiting(f"Kafka ({err.str()})")
