"""Kafka → ClickHouse: batch calls, insert, then commit offsets (never the other way)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from schemas.codec import CodecError
from sinks.clickhouse.writer import CallWriter
from wiretide import config, health
from wiretide.records import ApiCall
from wiretide.serde import decode_call_batch


class CallSink:
    """Consume `wiretide.calls` in a consumer group and store each batch idempotently."""

    def __init__(
        self,
        bootstrap: str,
        writer: CallWriter,
        *,
        status_file: Path | None = None,
        max_rows: int = 10_000,
        max_wait_s: float = 1.0,
        extra_status: dict[str, int] | None = None,
    ) -> None:
        self.writer = writer
        self.extra_status = extra_status or {}
        self.status_file = status_file
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.written = 0
        self.dead_letters = 0
        self._consumer = Consumer(
            {
                **config.kafka_client(bootstrap),
                "group.id": config.SINK_GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "session.timeout.ms": 10000,
            }
        )
        self._dlq = Producer(config.kafka_client(bootstrap, acks="all"))
        # What was consumed but not yet stored and committed (see `_flush`).
        self._pending: list[ApiCall] = []
        self._consumed = False
        # Store and commit before partitions move, so their next owner starts after what
        # this writer stored (with one store per writer, it would store them again).
        self._owned: set[int] = set()  # partitions assigned to this writer right now
        self._consumer.subscribe(
            [config.CALLS_TOPIC], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            self.step()
        self._consumer.close()

    def step(self) -> int:
        """Take one batch (≥ max_rows or max_wait_s), store it, commit. Returns rows stored."""
        health.beat("sink")
        deadline = time.monotonic() + self.max_wait_s
        while len(self._pending) < self.max_rows:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for msg in self._consumer.consume(
                num_messages=min(1000, self.max_rows - len(self._pending)), timeout=left
            ):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"Kafka consumer error: {err}")
                    continue
                if msg.partition() not in self._owned:
                    continue  # fetched before its partition moved: the new owner reads it
                self._consumed = True
                try:
                    self._pending.extend(decode_call_batch(msg.value()))
                except CodecError as exc:
                    self._dead_letter(msg, str(exc))
        return self._flush()

    def _flush(self) -> int:
        """Store what is pending, then commit the positions consumed (never the other way)."""
        if not self._consumed:
            return 0
        calls = self._pending
        if calls:
            self.writer.write(calls)  # raises SinkError: nothing committed, batch replays
        self._dlq.flush(30)
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as ex:
            if ex.args[0].code() != KafkaError._NO_OFFSET:
                raise
        self._pending = []
        self._consumed = False
        self.written += len(calls)
        self._report()
        return len(calls)

    def _on_assign(self, consumer: Consumer, partitions: list) -> None:
        self._owned.update(tp.partition for tp in partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list) -> None:
        self._flush()
        self._owned.difference_update(tp.partition for tp in partitions)

    def _dead_letter(self, msg: object, reason: str) -> None:
        self.dead_letters += 1
        self._dlq.produce(
            config.CALLS_TOPIC + config.DLQ_SUFFIX,
            key=msg.key(),
            value=msg.value(),
            headers={
                "reason": reason.encode(),
                "origin": f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode(),
            },
        )

    def _report(self) -> None:
        if self.status_file is None:
            return
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "written": self.written,
                    "dead_letters": self.dead_letters,
                    "pid": os.getpid(),
                    **self.extra_status,
                }
            )
        )
        tmp.replace(self.status_file)
