"""The Faust app: a thin shell that moves segment batches through `Pipeline`.

Offsets are acknowledged in order and only once the pipeline releases a message (see
`streams/pipeline.py`); Faust flushes the producer before every commit, so a call is in
`wiretide.calls` before the segments that made it are committed.
"""

from __future__ import annotations

import os
import ssl
from collections import deque
from dataclasses import dataclass, field

import faust
from faust.types import TP, EventT

from schemas.codec import CodecError
from streams.dissect.registry import default_registry
from streams.endpoints import EndpointFollower
from streams.enrich import Directory
from streams.pipeline import Pipeline, Processed
from streams.redact import RedactionPolicy
from streams.rules import load_rules
from wiretide import config, health
from wiretide.serde import decode_segment_batch, encode_call_batch, encode_violation

BOOTSTRAP = os.environ.get("WIRETIDE_KAFKA", "127.0.0.1:9092")
_redaction_file = os.environ.get("WIRETIDE_REDACTION")
POLICY = (
    RedactionPolicy.from_yaml(_redaction_file) if _redaction_file else RedactionPolicy.default()
)
REGISTRY = default_registry()
# Validation rules (WIRETIDE_RULES, a YAML file): a bad file stops the worker at start
# with a one-line RulesError (`wiretide tap --rules` checks it before anything starts).
_rules_file = config.rules_file()
RULES = load_rules(_rules_file) if _rules_file else ()


def _credentials() -> faust.types.auth.CredentialsT | None:
    """Faust's (aiokafka's) view of the same TLS/SASL settings the other clients use."""
    security = config.kafka_security()
    protocol = security.get("security.protocol", "")
    if not protocol:
        return None
    context = ssl.create_default_context(cafile=security.get("ssl.ca.location")) if (
        "SSL" in protocol
    ) else None  # fmt: skip
    if "SASL" in protocol:
        return faust.SASLCredentials(
            username=security["sasl.username"],
            password=security["sasl.password"],
            ssl_context=context,
            mechanism=security["sasl.mechanism"],
        )
    return faust.SSLCredentials(context)


DIRECTORY = Directory()  # IP -> pod/service, from the endpoints topic

app = faust.App(
    config.STREAMS_GROUP,
    broker=f"kafka://{BOOTSTRAP}",
    broker_credentials=_credentials(),
    store="memory://",
    datadir=str(config.data_dir() / "faust"),
    web_enabled=False,
    topic_partitions=config.partitions(),
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=0.5,
    # A killed worker's partitions move to the others within seconds, not a minute.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=2.0,
    producer_acks=-1,
    producer_linger_ms=5,
    producer_max_request_size=16 * 1024 * 1024,
    consumer_max_fetch_size=16 * 1024 * 1024,
    stream_buffer_maxsize=8192,
    # Events held by open flows stay unacked on purpose; a rebalance must not wait for
    # them (the next owner replays them from the committed offset).
    stream_wait_empty=False,
)
segments_topic = app.topic(
    config.SEGMENTS_TOPIC,
    key_serializer="raw",
    value_serializer="raw",
    partitions=config.partitions(),
)
calls_topic = app.topic(
    config.CALLS_TOPIC, key_serializer="raw", value_serializer="raw", partitions=config.partitions()
)
violations_topic = app.topic(
    config.VIOLATIONS_TOPIC,
    key_serializer="raw",
    value_serializer="raw",
    partitions=config.partitions(),
)
dlq_topic = app.topic(
    config.SEGMENTS_TOPIC + config.DLQ_SUFFIX,
    key_serializer="raw",
    value_serializer="raw",
    partitions=1,
)


@dataclass
class PartitionState:
    generation: int
    pipeline: Pipeline
    waiting: deque[tuple[int, EventT]] = field(default_factory=deque)  # in offset order
    released: set[int] = field(default_factory=set)
    next_token: int = 0
    last_offset: int = -1


partitions: dict[TP, PartitionState] = {}


def _state(tp: TP, generation: int, offset: int) -> PartitionState:
    """The partition's state for an event. After a rebalance a kept partition either
    continues where it was (keep the state) or goes back to the committed offset
    (start over: the replay rebuilds every open flow)."""
    state = partitions.get(tp)
    if state is None or (state.generation != generation and offset != state.last_offset + 1):
        if state is not None and offset > state.last_offset + 1:
            app.log.warning(
                "partition %s resumed at %d after %d: flows restart", tp, offset, state.last_offset
            )
        state = partitions[tp] = PartitionState(
            generation, Pipeline(REGISTRY, POLICY, directory=DIRECTORY, rules=RULES)
        )
    state.generation = generation
    return state


async def _publish(result: Processed) -> None:
    """One message per flow: calls of a flow stay in order on one partition. Then one
    message per failed verdict, keyed by rule name (sent before the segments are acked,
    so a crash replays them rather than losing them)."""
    by_flow: dict[str, list] = {}
    for call in result.calls:
        by_flow.setdefault(call.flow_id, []).append(call)
    for flow, calls in by_flow.items():
        await calls_topic.send(key=flow.encode(), value=encode_call_batch(flow, calls))
    for found in result.violations:
        await violations_topic.send(key=found.rule.encode(), value=encode_violation(found))


def _ack_released(state: PartitionState, released: list[int]) -> None:
    """Ack events from the head of the partition while they are released, never past a gap."""
    state.released.update(released)
    waiting = state.waiting
    while waiting and waiting[0][0] in state.released:
        token, event = waiting.popleft()
        state.released.discard(token)
        event.ack()


@app.agent(segments_topic)
async def reassemble(stream: faust.StreamT) -> None:
    async for event in stream.noack().events():
        message = event.message
        # Faust re-yields the previous event when it skips one from an older group
        # generation; either kind must not touch the state of the current generation.
        if message.generation_id != app.consumer_generation_id:
            continue
        state = _state(message.tp, message.generation_id, message.offset)
        if message.offset <= state.last_offset:
            continue
        state.last_offset = message.offset
        token = state.next_token
        state.next_token += 1
        state.waiting.append((token, event))
        headers = dict(event.message.headers or ())
        if config.EOF_HEADER.encode() in headers or config.EOF_HEADER in headers:
            result = state.pipeline.finish(token)
        else:
            try:
                segments = decode_segment_batch(event.value)
            except CodecError as exc:
                await dlq_topic.send(
                    key=event.key, value=event.value, headers={"reason": str(exc).encode()}
                )
                _ack_released(state, [token])
                continue
            result = state.pipeline.process(token, segments)
        await _publish(result)
        _ack_released(state, result.released)


def follow_endpoints(timeout_s: float = 10.0) -> EndpointFollower:
    """Start folding the endpoints topic into DIRECTORY, and wait (a while) until what it
    held at start is in: the first calls are then enriched too."""
    follower = EndpointFollower(BOOTSTRAP, config.ENDPOINTS_TOPIC, DIRECTORY)
    follower.start()
    follower.caught_up.wait(timeout_s)
    return follower


@app.timer(interval=2.0)
async def expire_idle_flows() -> None:
    health.beat("worker")
    for state in list(partitions.values()):
        result = state.pipeline.expire(state.pipeline.max_ts_ns)
        await _publish(result)
        _ack_released(state, result.released)


@app.on_partitions_assigned.connect
async def forget_moved(app: faust.App, assigned: set[TP], **kwargs: object) -> None:
    # Partitions now owned elsewhere are replayed there from the committed offset.
    for tp in set(partitions) - set(assigned):
        del partitions[tp]
