"""Publish segment batches to Kafka with no loss (acks=all, idempotent producer).

A broker outage is waited out, not fatal: messages stay queued (no delivery timeout),
the outage is said once, and flush waits while the broker is known to be away."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from producers.placement import FlowPlacement
from schemas.config import EOF_HEADER, Settings
from schemas.errors import WiretideError
from schemas.records import SYN, Segment
from schemas.runtime.outage import Outage, transient
from schemas.segment_wire import (
    SegmentColumns,
    SegmentMessage,
    decode_columns,
    encode_columns,
    encode_segments,
)
from schemas.serde import encode_segment_batch


def partition_key(flow: str) -> bytes:
    """The Kafka key of a flow's batches. TLS plaintext (`tls:a-b`) is keyed like the
    ciphertext of its connection (`tcp:a-b`), so one worker sees both and can leave the
    ciphertext's duplicate `tcp` record out (streams/dissect/opaque.py)."""
    if flow.startswith("tls:"):
        flow = "tcp:" + flow[4:]
    return flow.encode()


def _first_flags(columns: SegmentColumns) -> int:
    return int.from_bytes(columns.flags[:4], "little", signed=True)


def _message_opens(value: bytes) -> bool:
    """Whether an encoded message's first segment is a SYN (a version 1 message, or one
    that does not decode: no, so its flow keeps the stable hash)."""
    try:
        return bool(_first_flags(decode_columns(value)) & SYN)
    except Exception:  # noqa: BLE001 - any undecodable message is "not seen opening"
        return False


class PublishError(WiretideError):
    """Kafka refused or lost a message."""


class SegmentPublisher:
    def __init__(
        self,
        settings: Settings,
        topic: str | None = None,
        *,
        say: Callable[[str], None] | None = None,
        balance: bool = False,
    ) -> None:
        """`balance`: place flows seen opening on the least loaded partition
        (producers.placement), for a publisher that is the only one to see its flows (a
        tap). Agents of a cluster keep the stable hash (`balance` False): two of them may
        capture one connection, and both copies must meet in one partition."""
        self.topic = topic or settings.segments_topic
        self.errors: list[str] = []
        self.messages = 0
        self.segments = 0
        self.outage = Outage("capture", say=say)
        self.balance = balance
        self.placement: FlowPlacement | None = None  # made at the first message
        self._producer = Producer(
            {
                **settings.kafka_client(),
                "log_level": 2,  # an unreachable broker is said once, by `outage`
                "message.timeout.ms": 0,  # no delivery deadline: wait out broker outages
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 20,
                "batch.num.messages": 10000,
                # bounded so the agent stays small (<= 128 MiB) when it reads faster than
                # the broker takes: produce() waits for room (BufferError) instead
                "queue.buffering.max.kbytes": 48 * 1024,
                "message.max.bytes": 16 * 1024 * 1024,
                "error_cb": self._on_error,
            }
        )

    def _on_error(self, err: KafkaError) -> None:
        if transient(err):
            self.outage.waiting(f"Kafka ({err.str()})")
        else:
            self.errors.append(str(err))

    def _on_delivery(self, err: KafkaError | None, msg: object) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.outage.over()

    def _place(self, key: bytes, value: bytes, opens: Callable[[], bool]) -> dict:
        """The `partition` argument of a flow's message: none without `balance` (Kafka's
        partitioner hashes the key), else the flow's placement."""
        if not self.balance:
            return {}
        if self.placement is None:
            self.placement = FlowPlacement(len(self._partitions()))
        return {"partition": self.placement.partition(key, len(value), opens)}

    def _produce(self, **kwargs: object) -> None:
        while True:
            try:
                self._producer.produce(self.topic, on_delivery=self._on_delivery, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
        self._producer.poll(0)

    def publish(self, flow: str, segments: list[Segment]) -> None:
        """One message of a flow's segments, as columns (version 2 of the segments wire)."""
        try:
            value = encode_segments(flow, segments)
        except Exception:  # e.g. a number out of its range: version 1 fits it (or says why)
            value = encode_segment_batch(flow, segments)
        key = partition_key(flow)
        opens = lambda: bool(segments[0].flags & SYN)  # noqa: E731
        self._produce(key=key, value=value, **self._place(key, value, opens))
        self.messages += 1
        self.segments += len(segments)

    def publish_columns(self, batch: SegmentColumns) -> None:
        """One message of a batch of columns (a live capture's)."""
        key, value = partition_key(batch.flow_id), encode_columns(batch)
        opens = lambda: bool(_first_flags(batch) & SYN)  # noqa: E731
        self._produce(key=key, value=value, **self._place(key, value, opens))
        self.messages += 1
        self.segments += batch.count

    def publish_message(self, message: SegmentMessage) -> None:
        """A message as `producers.pcap.read_batches` gives them."""
        key, value = partition_key(message.flow_id), message.value
        opens = lambda: _message_opens(value)  # noqa: E731
        self._produce(key=key, value=value, **self._place(key, value, opens))
        self.messages += 1
        self.segments += message.count

    def publish_end_of_capture(self, capture_id: str | None = None) -> str:
        """Mark the end of a replayed capture on every partition, so workers close flows;
        everything published before is delivered first, the markers are delivered too."""
        capture_id = capture_id or uuid.uuid4().hex
        self.flush()
        for p in self._partitions():
            self._produce(
                partition=p, key=b"", value=b"", headers={EOF_HEADER: capture_id.encode()}
            )
        self.flush()
        return capture_id

    def _partitions(self) -> list[int]:
        while True:
            try:
                md = self._producer.list_topics(self.topic, timeout=10)
            except KafkaException as exc:
                err = exc.args[0]
                if not transient(err):
                    raise PublishError(f"cannot read topic {self.topic}: {err.str()}") from None
                self.outage.waiting(f"Kafka ({err.str()})")
                self.outage.sleep()
                continue
            topic = md.topics[self.topic]
            if topic.error is None or not transient(topic.error):
                return list(topic.partitions)
            self.outage.waiting(f"Kafka to serve {self.topic} ({topic.error.str()})")
            self.outage.sleep()

    def _flush(self, timeout: float) -> int:
        try:
            return self._producer.flush(timeout)
        except SystemError as exc:
            # Ctrl-C inside librdkafka's flush: confluent-kafka loses the KeyboardInterrupt
            # and returns NULL ("without setting an exception"); it was an interruption.
            raise KeyboardInterrupt from exc

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every message is delivered. Raises if one failed, or if `timeout`
        seconds pass with no delivery while the broker is not known to be away."""
        left = self._flush(0)
        last_change, last_left = time.monotonic(), left
        while left:
            left = self._flush(1.0)
            if left != last_left or self.outage.active:
                last_change, last_left = time.monotonic(), left
            elif time.monotonic() - last_change > timeout:
                raise PublishError(
                    f"{left} segment messages were not delivered within {timeout:.0f}s"
                )
        if self.errors:
            raise PublishError(f"Kafka delivery failed: {self.errors[0]}")
