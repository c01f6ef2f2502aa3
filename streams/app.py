"""The stream worker: a thin shell that moves segment batches through `Pipeline`, one
pipeline per partition it owns, on plain Kafka clients (confluent-kafka).

Delivery, the same after a crash and after a rebalance:
- a partition's offset is committed at its pipeline's checkpoint (the lowest message a
  flow still needs), with the positions of the flows open across that cut in the commit's
  metadata, atomically, and only after the producer delivered every call made before the
  cut (`Deliveries`: the loop goes on reading while they are acknowledged, instead of
  stopping in a flush at every commit);
- whoever owns the partition next (this worker after a restart, another after a move)
  reads the commit and its metadata and starts a pipeline from exactly there, so it
  skips the bytes of calls already emitted and re-emits the rest under the same ids;
- a worker commits before its partitions are revoked, so a move replays little.

Faust was dropped here: its commits carry no metadata and its acks race generation changes.
"""

from __future__ import annotations

import base64
import functools
import logging
import signal
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTP

from schemas.codec import CodecError
from schemas.config import DLQ_SUFFIX, EOF_HEADER, Settings
from schemas.runtime import health
from schemas.runtime.metrics import DEAD_LETTERS, count_calls, count_failures
from schemas.serde import decode_segment_batch, encode_call_batch_isolated, encode_violation
from streams.dissect.registry import default_registry
from streams.endpoints import EndpointFollower
from streams.enrich import Directory
from streams.pipeline import Checkpoint, Pipeline, Processed
from streams.redact import RedactionPolicy
from streams.rules import Rule, load_rules

log = logging.getLogger("wiretide.worker")

REGISTRY = default_registry()

COMMIT_INTERVAL_S = 0.5
EXPIRE_EVERY_NS = 2_000_000_000  # capture time: the same cut points in every replay
# A checkpoint longer than the broker's offset.metadata.max.bytes (Kafka's default 4096; our
# broker sets 32767, the most the wire carries) waits for a later cut; a margin to spare.
METADATA_MARGIN = 96


class WorkerError(Exception):
    """Something the worker cannot go on from (Kafka refused a call or a commit)."""


def encode_checkpoint(cp: Checkpoint) -> str:
    """Commit metadata: the flows open across the cut and where their replay resumes."""
    if not cp.resume:
        return ""
    lines = [
        f"{fid} {pos.get('lo', '-')} {pos.get('hi', '-')}" for fid, pos in sorted(cp.resume.items())
    ]
    return "z1:" + base64.b64encode(zlib.compress("\n".join(lines).encode(), 9)).decode()


def decode_checkpoint(offset: int, metadata: str | None) -> Checkpoint:
    resume: dict[str, dict[str, int]] = {}
    if metadata and metadata.startswith("z1:"):
        text = zlib.decompress(base64.b64decode(metadata[3:])).decode()
        for line in text.splitlines():
            fid, lo, hi = line.rsplit(" ", 2)
            resume[fid] = {s: int(v) for s, v in (("lo", lo), ("hi", hi)) if v != "-"}
    return Checkpoint(offset, resume)


@dataclass
class Partition:
    pipeline: Pipeline
    next_offset: int | None  # the next offset to process (None: the first one fetched)
    committed: Checkpoint | None  # as last committed (None: never)
    expired_at: int = 0  # capture-time slot of the last idle-flow sweep


Produce = Callable[..., None]  # Producer.produce's signature (topic, key=, value=, ...)


class Deliveries:
    """Which produced messages are acknowledged, as a low-water mark: every message
    numbered below `low` is delivered. Sans-IO: `sent` numbers a message, `done` is told
    its delivery (in any order across partitions)."""

    def __init__(self) -> None:
        self.sent_count = 0
        self.low = 0
        self._done: set[int] = set()

    def sent(self) -> int:
        seq = self.sent_count
        self.sent_count += 1
        return seq

    def done(self, seq: int) -> None:
        if seq != self.low:
            self._done.add(seq)
            return
        self.low += 1
        done = self._done
        while self.low in done:
            done.remove(self.low)
            self.low += 1

    def covers(self, cut: int) -> bool:
        """Whether every message numbered below `cut` is delivered."""
        return self.low >= cut


@dataclass
class PendingCommit:
    """Offsets cut at `cut` messages produced, committed once those are delivered."""

    cut: int
    offsets: list  # (partition, Checkpoint, TopicPartition)


class Streams:
    """What the worker does with a segment message of a partition it owns, without Kafka:
    decode, run the partition's pipeline, hand the calls (one message per flow), dead
    letters and violations to `produce`. The worker's shell and bench/bench_worker.py
    share it."""

    def __init__(self, settings: Settings, produce: Produce, on_delivery: Callable) -> None:
        self.parts: dict[int, Partition] = {}
        self._produce = produce
        self._delivered = on_delivery
        self._segments_dlq = settings.segments_topic + DLQ_SUFFIX
        self._calls = settings.calls_topic
        self._violations = settings.violations_topic
        self.calls = 0  # calls published so far

    def on_message(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, headers: list
    ) -> None:
        part = self.parts.get(partition)
        if part is None or (part.next_offset is not None and offset < part.next_offset):
            return  # fetched before a move, or read twice: the owner's pipeline has it
        part.next_offset = offset + 1
        pipe = part.pipeline
        if headers and any(name == EOF_HEADER for name, _ in headers):
            self.publish(pipe.finish(offset))
            return
        try:
            segments = decode_segment_batch(value)
        except CodecError as exc:
            DEAD_LETTERS.labels("worker", self._segments_dlq).inc()
            self._produce(
                self._segments_dlq,
                key=key,
                value=value,
                headers={"reason": str(exc).encode()},
                on_delivery=self._delivered,
            )
            pipe.skip(offset)
            return
        self.publish(pipe.process(offset, segments))
        slot = pipe.max_ts_ns // EXPIRE_EVERY_NS
        if slot > part.expired_at:
            part.expired_at = slot
            self.publish(pipe.expire(pipe.max_ts_ns))

    def publish(self, result: Processed) -> None:
        """One message per flow (a flow's calls stay in order on one partition), a call
        that cannot be encoded to `<calls>.dlq` with its reason, then one message per failed
        verdict keyed by rule name; all delivered before the offsets that made them commit."""
        produce = self._produce
        delivered = self._delivered
        topic = self._calls
        calls = result.calls
        if calls:
            self.calls += len(calls)
            count_calls(calls)
            by_flow: dict[str, list] = {}
            for call in calls:
                flow_calls = by_flow.get(call.flow_id)
                if flow_calls is None:
                    by_flow[call.flow_id] = [call]
                else:
                    flow_calls.append(call)
            for flow, flow_calls in by_flow.items():
                value, rejected = encode_call_batch_isolated(flow, flow_calls)
                if value is not None:
                    produce(topic, key=flow.encode(), value=value, on_delivery=delivered)
                for bad in rejected:
                    DEAD_LETTERS.labels("worker", topic + DLQ_SUFFIX).inc()
                    body, form = bad.dead_letter_value()
                    produce(
                        topic + DLQ_SUFFIX,
                        key=flow.encode(),
                        value=body,
                        headers={"reason": bad.reason.encode(), "format": form.encode()},
                        on_delivery=delivered,
                    )
        if result.failures:
            count_failures(result.failures)
        for found in result.violations:
            produce(
                self._violations,
                key=found.rule.encode(),
                value=encode_violation(found),
                on_delivery=delivered,
            )


class Worker:
    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        policy: RedactionPolicy,
        rules: tuple[Rule, ...] = (),
        metadata_limit: int = 4096,
    ) -> None:
        """`directory`: IP -> pod/service, filled from the endpoints topic;
        `metadata_limit`: the broker's offset.metadata.max.bytes."""
        self._settings = settings
        self._max_metadata = metadata_limit - METADATA_MARGIN
        self._directory = directory
        self._policy = policy
        self._rules = rules
        self._consumer = Consumer(
            {
                **settings.kafka_client(),
                "group.id": settings.streams_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                # A killed worker's partitions move to the others within seconds.
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 2000,
                "max.poll.interval.ms": 300000,
                "log_level": 3,
            }
        )
        self._producer = Producer(
            settings.kafka_client(
                acks="all",
                **{"enable.idempotence": True, "linger.ms": 5, "message.max.bytes": 16 << 20},
            )
        )
        self._failed: list[str] = []
        self._deliveries = Deliveries()
        self._waiting: list[PendingCommit] = []  # cut, not yet delivered: in cut order
        self._streams = Streams(settings, self._produce, self._delivered)
        self._parts = self._streams.parts
        self._last_commit = time.monotonic()
        self._consumer.subscribe(
            [settings.segments_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    # -- the loop --------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> None:
        try:
            while not should_stop():
                health.beat("worker", self._settings.data)
                for msg in self._take():
                    self._on_message(msg)
                self._producer.poll(0)
                if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
                    self._cut()
                self._commit_delivered()
            self.commit()
        finally:
            self._consumer.close()  # revokes (and so commits) what it still owns

    def _take(self) -> list:
        """What is fetched already, else the first message to come (up to 50 ms) and what
        came with it: consume() with a timeout waits it out unless 500 messages come, and
        at a live rate that wait was the worker's latency (bench/bench_latency.py)."""
        msgs = self._consumer.consume(num_messages=500, timeout=0)
        if msgs:
            return msgs
        first = self._consumer.poll(0.05)
        if first is None:
            return []
        return [first, *self._consumer.consume(num_messages=499, timeout=0)]

    def _on_message(self, msg: object) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            if err.fatal() or not err.retriable():
                raise WorkerError(f"Kafka consumer error: {err}")
            return
        self._streams.on_message(
            msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers()
        )

    def _produce(self, topic: str, **kwargs: object) -> None:
        """Producer.produce, the message numbered for `Deliveries`."""
        seq = self._deliveries.sent()
        delivered = kwargs.pop("on_delivery")
        self._producer.produce(
            topic, on_delivery=functools.partial(self._numbered, seq, delivered), **kwargs
        )

    def _numbered(self, seq: int, delivered: Callable, err: object, msg: object) -> None:
        delivered(err, msg)
        if err is None:
            self._deliveries.done(seq)

    def _delivered(self, err: object, msg: object) -> None:
        if err is not None:
            self._failed.append(f"{msg.topic()}: {err}")

    # -- commits ---------------------------------------------------------------------------
    def commit(self, only: set[int] | None = None) -> None:
        """Commit each partition's checkpoint now, after every message produced so far
        is delivered (a flush): at a stop and before partitions are revoked."""
        self._last_commit = time.monotonic()
        self._waiting.clear()  # superseded: this cut is later than theirs
        offsets = self._checkpoints(only)
        if not offsets:
            return
        left = self._producer.flush(60)
        if left or self._failed:
            raise WorkerError(f"calls not delivered: {self._failed[:1] or [f'{left} pending']}")
        self._commit_offsets(offsets)

    def _cut(self) -> None:
        """Take each partition's checkpoint now; it is committed by `_commit_delivered`
        once every message produced before it is delivered, while the loop reads on."""
        self._last_commit = time.monotonic()
        offsets = self._checkpoints(None)
        if offsets:
            self._waiting.append(PendingCommit(self._deliveries.sent_count, offsets))

    def _commit_delivered(self) -> None:
        """Commit the latest cut whose messages are all delivered (with any earlier cut's
        partitions it does not carry)."""
        if self._failed:
            raise WorkerError(f"calls not delivered: {self._failed[0]}")
        ready = 0
        while ready < len(self._waiting) and self._deliveries.covers(self._waiting[ready].cut):
            ready += 1
        if not ready:
            return
        latest: dict[int, tuple] = {}
        for pending in self._waiting[:ready]:
            for entry in pending.offsets:
                latest[entry[0]] = entry
        del self._waiting[:ready]
        self._commit_offsets(list(latest.values()))

    def _checkpoints(self, only: set[int] | None) -> list[tuple]:
        """(partition, checkpoint, TopicPartition) of each partition with a new cut."""
        offsets = []
        for p, part in self._parts.items():
            if (only is not None and p not in only) or part.next_offset is None:
                continue
            cp = part.pipeline.checkpoint(part.next_offset)
            if part.committed is not None and cp.token <= part.committed.token:
                continue
            metadata = encode_checkpoint(cp)
            if len(metadata) > self._max_metadata:
                log.warning(
                    "partition %d: %d flows open across the cut need %d bytes of commit "
                    "metadata; the commit waits (raise the broker's offset.metadata.max.bytes)",
                    p, len(cp.resume), len(metadata),
                )  # fmt: skip
                continue
            offsets.append(
                (p, cp, KafkaTP(self._settings.segments_topic, p, cp.token, metadata=metadata))
            )
        return offsets

    def _commit_offsets(self, offsets: list[tuple]) -> None:
        try:
            self._consumer.commit(offsets=[tp for _, _, tp in offsets], asynchronous=False)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                        KafkaError.UNKNOWN_MEMBER_ID):  # fmt: skip
                return  # the partitions moved: their next owner replays from the last commit
            raise WorkerError(f"cannot commit: {exc}") from None
        for p, cp, _ in offsets:
            if p in self._parts:
                self._parts[p].committed = cp

    def _on_assign(self, consumer: Consumer, tps: list) -> None:
        self._waiting.clear()  # cut under the last assignment: cut again
        committed = consumer.committed(tps, timeout=30)
        start = []
        for tp in committed:
            pipe = Pipeline(REGISTRY, self._policy, directory=self._directory, rules=self._rules)
            if tp.offset >= 0:
                cp = decode_checkpoint(tp.offset, tp.metadata)
                pipe.resume(cp)
                self._parts[tp.partition] = Partition(pipe, tp.offset, cp)
                start.append(KafkaTP(tp.topic, tp.partition, tp.offset))
            else:
                self._parts[tp.partition] = Partition(pipe, None, None)
                start.append(KafkaTP(tp.topic, tp.partition, OFFSET_BEGINNING))
        consumer.assign(start)

    def _on_revoke(self, consumer: Consumer, tps: list) -> None:
        gone = {tp.partition for tp in tps}
        try:
            self.commit(only=gone)
        finally:
            for p in gone:
                self._parts.pop(p, None)
            consumer.unassign()


def follow_endpoints(
    settings: Settings, directory: Directory, timeout_s: float = 10.0
) -> EndpointFollower:
    """Start folding the endpoints topic into `directory`, and wait (a while) until what it
    held at start is in: the first calls are then enriched too."""
    follower = EndpointFollower(settings, settings.endpoints_topic, directory)
    follower.start()
    follower.caught_up.wait(timeout_s)
    return follower


def run(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (exit 0 after a last commit) or a fault (exit 1, so the
    supervisor restarts it: never a live process that does nothing). A bad redaction or
    rules file raises before anything starts (a RulesError is one line)."""
    from schemas.runtime.topics import commit_metadata_limit, ensure_topics

    policy = (
        RedactionPolicy.from_yaml(settings.redaction)
        if settings.redaction
        else RedactionPolicy.default()
    )
    rules = load_rules(settings.rules) if settings.rules else ()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    try:
        ensure_topics(settings)
        directory = Directory()
        follow_endpoints(settings, directory)
        limit = commit_metadata_limit(settings)
        Worker(settings, directory, policy, rules, limit).run(lambda: bool(stopping))
    except (WorkerError, KafkaException) as exc:
        log.error("worker stopped: %s", exc)
        return 1
    return 0
