"""The live tail: one Kafka consumer thread for every WebSocket watching new calls.

The consumer reads the calls topic from its end (explicit offsets from the high
watermarks, so "ready" means every call published from then on is seen), never joins a
group or commits, decodes each CallBatch, turns every call into its `call_view` and hands
it to each subscriber whose KFL predicate takes it. Subscribers live on the event loop;
the thread reaches them through `call_soon_threadsafe`. A subscriber that falls behind
has a bounded backlog; calls that do not fit are counted and it is told how many it missed.

The thread starts with the first subscriber and stops when the last one leaves.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from sinks.clickhouse.view import call_view
from sinks.errors import one_line
from wiretide import config
from wiretide.errors import WiretideError
from wiretide.serde import decode_call_batch

Predicate = Callable[[dict[str, Any]], bool]
_TIMEOUT_S = 10.0
# Answers about a topic that is still being created (librdkafka does not call them retriable)
_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
}


class LiveError(WiretideError):
    """The live tail cannot start or went down (Kafka unreachable, topic lost)."""


class Subscription:
    """One WebSocket's share of the tail: its filter and the calls waiting for it."""

    def __init__(self, predicate: Predicate, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.predicate = predicate
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any] | LiveError] = asyncio.Queue(size)
        self.dropped = 0  # calls that matched but did not fit, since last told

    def offer(self, item: dict[str, Any] | LiveError) -> None:
        """On the event loop: queue a call (or the error that ends the tail)."""
        if isinstance(item, LiveError):
            while self.queue.full():  # the error must get through
                self.queue.get_nowait()
        elif self.queue.full():
            self.dropped += 1
            return
        self.queue.put_nowait(item)

    async def next(self) -> dict[str, Any]:
        """The next matching call; raises LiveError when the tail went down."""
        item = await self.queue.get()
        if isinstance(item, LiveError):
            raise item
        return item

    def take_dropped(self) -> int:
        n, self.dropped = self.dropped, 0
        return n


class _TailThread(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, tail: LiveTail) -> None:
        super().__init__(name="wiretide-hub-live", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.tail = tail
        self.stopping = threading.Event()
        self.consumer = Consumer(
            config.kafka_client(
                bootstrap,
                **{
                    "group.id": f"{config.PREFIX}wiretide-hub-live-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "fetch.max.bytes": 64 * 1024 * 1024,
                    "log_level": 3,
                },
            )
        )

    def assign_at_end(self) -> None:
        """Blocking: start reading after the newest message of every partition."""
        from wiretide.topics import ensure_topics

        try:
            ensure_topics(self.bootstrap)  # a hub may be up before the first capture
            self.consumer.assign(self._ends(time.monotonic() + _TIMEOUT_S))
        except (KafkaException, WiretideError) as ex:
            self.consumer.close()
            raise LiveError(
                f"live tail: cannot read {self.topic} at {self.bootstrap}: {_kafka_reason(ex)}"
            ) from None

    def _ends(self, deadline: float) -> list[TopicPartition]:
        """The high watermark of each partition. A topic just created has no leaders for
        a moment: retry those answers until the deadline."""
        while True:
            try:
                meta = self.consumer.list_topics(self.topic, timeout=_TIMEOUT_S).topics[self.topic]
                if meta.error is not None:
                    raise KafkaException(meta.error)
                ends = []
                for p in sorted(meta.partitions):
                    tp = TopicPartition(self.topic, p)
                    _, high = self.consumer.get_watermark_offsets(tp, timeout=_TIMEOUT_S)
                    ends.append(TopicPartition(self.topic, p, high))
                return ends
            except KafkaException as ex:
                err = ex.args[0] if ex.args else None
                settling = isinstance(err, KafkaError) and (
                    err.retriable() or err.code() in _SETTLING
                )
                if not settling or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for msg in self.consumer.consume(num_messages=500, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            continue
                        if err.fatal() or not err.retriable():
                            raise KafkaException(err)
                        continue
                    self.deliver(msg.value())
        except Exception as ex:  # the tail is down: tell every subscriber why
            self.tail.fail(LiveError(f"live tail stopped: {_kafka_reason(ex)}"))
        finally:
            self.consumer.close()

    def deliver(self, value: bytes | None) -> None:
        if not value:
            return
        try:
            calls = decode_call_batch(value)
        except Exception:  # the sink dead-letters it; the tail just skips it
            self.tail.undecodable += 1
            return
        subscribers = self.tail.subscribers  # a snapshot taken after the poll
        for call in calls:
            view = call_view(call)
            for sub in subscribers:
                try:
                    keep = sub.predicate(view)
                except Exception:  # a predicate bug must not end everyone's tail
                    keep = False
                if keep:
                    sub.loop.call_soon_threadsafe(sub.offer, view)


def _kafka_reason(ex: BaseException) -> str:
    if isinstance(ex, KafkaException) and ex.args and isinstance(ex.args[0], KafkaError):
        return ex.args[0].str()
    return one_line(ex)


class LiveTail:
    """Subscribe WebSockets to new calls. `bootstrap` is asked each time the thread
    starts (a local broker may come up after the hub); it raises LiveError if none."""

    def __init__(
        self, bootstrap: Callable[[], str], topic: str | None = None, queue_size: int = 1000
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic or config.CALLS_TOPIC
        self.queue_size = queue_size
        self.subscribers: tuple[Subscription, ...] = ()  # replaced, never mutated
        self.undecodable = 0
        self._thread: _TailThread | None = None
        self._retired: list[_TailThread] = []  # stopping; joined by `close`
        self._lock = asyncio.Lock()

    async def subscribe(self, predicate: Predicate) -> Subscription:
        """Once this returns, every call published afterwards reaches the subscription."""
        sub = Subscription(predicate, asyncio.get_running_loop(), self.queue_size)
        async with self._lock:
            if self._thread is None or not self._thread.is_alive():
                thread = await asyncio.to_thread(self._new_thread)
                thread.start()
                self._thread = thread
            self.subscribers = (*self.subscribers, sub)
        return sub

    def _new_thread(self) -> _TailThread:
        try:
            thread = _TailThread(self.bootstrap(), self.topic, self)
        except KafkaException as ex:
            raise LiveError(f"live tail: {_kafka_reason(ex)}") from None
        thread.assign_at_end()
        return thread

    async def unsubscribe(self, sub: Subscription) -> None:
        """Leave; the last one out stops the thread (without waiting for it: a handler
        being cancelled at shutdown must not hang, and `close` joins it)."""
        async with self._lock:
            self.subscribers = tuple(s for s in self.subscribers if s is not sub)
            if not self.subscribers and self._thread is not None:
                self._retire()

    def _retire(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stopping.set()
            self._retired = [t for t in self._retired if t.is_alive()] + [thread]

    def fail(self, error: LiveError) -> None:
        """From the thread: end every subscription with `error`."""
        for sub in self.subscribers:
            sub.loop.call_soon_threadsafe(sub.offer, error)

    async def close(self) -> None:
        """Stop the thread and wait for every consumer to be closed."""
        async with self._lock:
            self._retire()
            retired, self._retired = self._retired, []
        for thread in retired:
            await asyncio.to_thread(thread.join)
