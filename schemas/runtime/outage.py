"""Waiting out an outage (a Kafka broker restarting, a store that takes no writes):
back off between tries, and say so once per outage instead of exiting or flooding the log.

Every long-running Kafka client uses it: the sink's consumer, commits and dead-letter
producer, the segment publisher, the endpoints follower. `PartitionHold` is the consumers'
side of an outage downstream (the sink's store, the OTLP exporter's collector).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator

from confluent_kafka import KafkaError, KafkaException

# Kafka errors that pass when the broker or the group coordinator comes back.
_TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._WAIT_COORD,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError._MAX_POLL_EXCEEDED,  # a long wait elsewhere: the next poll rejoins
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
    }
)


def transient(err: KafkaError) -> bool:
    """True for an error that a broker coming back cures (retry), False for one it does not."""
    return not err.fatal() and (err.code() in _TRANSIENT or err.retriable())


def owned_messages(
    messages: Iterable, owned: Collection[int], kafka: Outage, fail: Callable[[str], Exception]
) -> Iterator:
    """The messages of a consume() that carry a value of a partition this consumer still
    owns. End-of-partition events are skipped; a transient error is waited out (`kafka`
    says so once), any other error raises `fail(line)`."""
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            if not transient(err):
                raise fail(f"Kafka consumer error: {err.str()}")
            kafka.waiting(f"Kafka ({err.str()})")
            continue
        kafka.over()
        if msg.partition() in owned:  # else fetched before it moved: the new owner reads it
            yield msg


def commit_through_outages(consumer, kafka: Outage, alive: Callable[[], None]) -> None:  # noqa: ANN001
    """Commit a consumer's positions, waiting out a broker or coordinator outage (`alive`
    is called while it waits: a liveness probe must not restart a waiter). Nothing to
    commit, or a group that moved on (a rebalance during the outage), returns: the new
    owner reads those records again, and the store or the backend collapses them."""
    while True:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as ex:
            err = ex.args[0]
            if err.code() == KafkaError._NO_OFFSET or not transient(err):
                return
            kafka.waiting(f"Kafka to commit ({err.str()})")
            alive()
            kafka.sleep()
            continue
        kafka.over()
        return


class Outage:
    """One client's view of an outage: `waiting(reason)` says once that it waits, `sleep()`
    backs off (0.2 s doubling to `max_delay`), `over()` says once that it goes on. For
    `quiet` seconds after that, reports of the same outage that arrive late are ignored."""

    def __init__(
        self,
        who: str,
        *,
        max_delay: float = 5.0,
        quiet: float = 10.0,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.who = who
        self.max_delay = max_delay
        self.quiet = quiet
        self._back_at = -quiet
        self.active = False
        self.since = 0.0
        self._delay = 0.2
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))

    def waiting(self, reason: str) -> None:
        if time.monotonic() - self._back_at < self.quiet:
            return  # a late report of the outage just over (clients queue their errors)
        if not self.active:
            self.active, self.since = True, time.monotonic()
            self._say(f"wiretide {self.who}: waiting for {reason}; retrying until it is back")

    def next_delay(self) -> float:
        """How long to wait before the next try (grows each call)."""
        delay, self._delay = self._delay, min(self._delay * 2, self.max_delay)
        return delay

    def sleep(self) -> None:
        time.sleep(self.next_delay())

    def over(self) -> None:
        if self.active:
            gone = time.monotonic() - self.since
            self._say(f"wiretide {self.who}: back after {gone:.0f}s, going on")
            self._back_at = time.monotonic()
        self.active, self._delay = False, 0.2


class PartitionHold:
    """A consumer's partitions while what it hands its records to (a store, a collector)
    is away: `hold` pauses them (the consumer stays in its group and fetches nothing more),
    `wait` polls between tries with the outage's backoff, `release` resumes them.
    Partitions assigned while held come paused. `owned` is what the consumer is assigned
    now, for owned_messages; the consumer's rebalance callbacks call `assigned`/`revoked`.
    A consumer that holds nothing back (a rebalance took what it held) releases: held with
    nothing to retry, it would stay paused for good."""

    def __init__(self, away: Outage) -> None:
        self.away = away
        self.owned: set[int] = set()
        self.held = False

    def hold(self, consumer) -> None:  # noqa: ANN001
        if not self.held and self.owned:
            consumer.pause(consumer.assignment())
        self.held = True

    def release(self, consumer) -> None:  # noqa: ANN001
        if self.held:
            consumer.resume(consumer.assignment())
            self.held = False

    def wait(self, consumer) -> list:  # noqa: ANN001
        """Poll while held (rebalances and errors come in; records of paused partitions
        do not), for as long as the outage's next backoff."""
        return consumer.consume(num_messages=1, timeout=self.away.next_delay())

    def assigned(self, consumer, partitions: list) -> None:  # noqa: ANN001
        self.owned.update(tp.partition for tp in partitions)
        # Resumed too: librdkafka keeps a partition's pause across a revoke, so one paused
        # by an earlier hold would come back paused and never be fetched again.
        if self.held:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)

    def revoked(self, partitions: list) -> None:
        self.owned.difference_update(tp.partition for tp in partitions)
