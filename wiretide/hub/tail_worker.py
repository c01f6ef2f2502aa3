"""One live-tail subscriber's evaluator: its own process, so no filter can stall the hub.

`python -m wiretide.hub.tail_worker` reads one JSON line on stdin (bootstrap, topic,
filter, budget), reads the calls topic from its end (explicit offsets from the high
watermarks, so "ready" means every call published from then on is seen; it never joins
a group or commits), decodes each CallBatch, and writes JSON lines on stdout:

    {"type": "ready"}                     reading from the end now
    {"type": "call", "call": call_view}   a call the filter takes
    {"type": "tick"}                      alive (at least every TICK_S while it can)
    {"type": "error", "error": "..."}     the last line: why it stops

A regex running in C holds the GIL: in the hub's process it would freeze the API, the
writer beside it and its signal handling. Here it freezes only this process, which the
hub kills when it goes silent; a filter that is merely slow overdraws its budget and
stops itself. Closed stdin (the hub unsubscribed) or a dead parent ends it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from typing import IO, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas.config import Settings

TICK_S = 0.5
_TIMEOUT_S = 10.0
# Answers about a topic that is still being created (librdkafka does not call them retriable)
_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
}


class _Out:
    """JSON lines to the hub; remembers when it last said anything."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.said_at = time.monotonic()

    def send(self, message: dict[str, Any]) -> None:
        self.stream.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.stream.flush()
        self.said_at = time.monotonic()

    def tick_if_quiet(self) -> None:
        if time.monotonic() - self.said_at >= TICK_S:
            self.send({"type": "tick"})


def kafka_reason(ex: BaseException) -> str:
    from sinks.errors import one_line

    if isinstance(ex, KafkaException) and ex.args and isinstance(ex.args[0], KafkaError):
        return ex.args[0].str()
    return one_line(ex)


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        settings.kafka_client(
            **{
                "group.id": f"{settings.prefix}wiretide-hub-live-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "log_level": 3,
            },
        )
    )


def _ends(consumer: Consumer, topic: str, deadline: float) -> list[TopicPartition]:
    """The high watermark of each partition. A topic just created has no leaders for a
    moment: retry those answers until the deadline."""
    while True:
        try:
            meta = consumer.list_topics(topic, timeout=_TIMEOUT_S).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            ends = []
            for p in sorted(meta.partitions):
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=_TIMEOUT_S
                )
                ends.append(TopicPartition(topic, p, high))
            return ends
        except KafkaException as ex:
            err = ex.args[0] if ex.args else None
            settling = isinstance(err, KafkaError) and (err.retriable() or err.code() in _SETTLING)
            if not settling or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def tail(request: dict[str, Any], out: _Out, settings: Settings) -> None:
    """Evaluate the filter on every new call until stdin closes; raises to stop."""
    from schemas.errors import WiretideError
    from schemas.runtime.topics import ensure_topics
    from schemas.serde import decode_call_batch
    from sinks.clickhouse.view import call_view
    from wiretide.hub.budget import BudgetLimits, EvaluationBudget
    from wiretide.kfl import parse, to_predicate

    predicate = to_predicate(parse(request["filter"]))
    limits = BudgetLimits(**request.get("limits", {}))
    bootstrap, topic = request["bootstrap"], request["topic"]
    settings = settings.replace(kafka=bootstrap)
    try:
        consumer = _consumer(settings)
    except KafkaException as ex:
        raise _Stop(f"live tail: {kafka_reason(ex)}") from None
    try:
        try:
            ensure_topics(settings)  # a hub may be up before the first capture
            consumer.assign(_ends(consumer, topic, time.monotonic() + _TIMEOUT_S))
        except (KafkaException, WiretideError) as ex:
            raise _Stop(
                f"live tail: cannot read {topic} at {bootstrap}: {kafka_reason(ex)}"
            ) from None
        out.send({"type": "ready"})
        budget = EvaluationBudget(limits, time.monotonic())
        while True:
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal() or not err.retriable():
                        raise _Stop(f"live tail stopped: {err.str()}")
                    continue
                try:
                    calls = decode_call_batch(msg.value() or b"")
                except Exception:  # noqa: S112 - the sink dead-letters it; the tail skips it
                    continue
                for call in calls:
                    view = call_view(call)
                    started = time.thread_time()
                    try:
                        keep = predicate(view)
                    except Exception:  # a predicate bug must not end the tail
                        keep = False
                    if not budget.spend(time.thread_time() - started, time.monotonic()):
                        raise _Stop(budget.why_stopped())
                    if keep:
                        out.send({"type": "call", "call": view})
                    out.tick_if_quiet()
            out.tick_if_quiet()
    finally:
        consumer.close()


class _Stop(Exception):
    """Why the tail stops, in one line for the subscriber."""


def _die_with_parent() -> None:
    """Linux: SIGKILL when the hub goes, even while a regex holds this process."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: closed stdin still ends it
        pass


def _exit_when_stdin_closes() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


def main() -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the hub decides when this ends
    out = _Out(sys.stdout.buffer)
    line = sys.stdin.buffer.readline()
    if not line:
        return 0
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    try:
        tail(json.loads(line), out, Settings.from_env())  # the hub hands its settings down
    except _Stop as ex:
        why = str(ex)
    except BrokenPipeError:
        return 0
    except Exception as ex:  # anything else still reaches the subscriber as one line
        why = f"live tail stopped: {kafka_reason(ex)}"
    try:
        out.send({"type": "error", "error": why})
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
