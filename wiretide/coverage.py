"""Coverage in and out of Kafka and the store (the facts and the report are
schemas/coverage.py's): the agent publishes its `NodeCoverage` on the compacted coverage
topic, keyed by node; readers take each node's newest record and sum the undecrypted TLS
flows the store holds."""

from __future__ import annotations

import time
from typing import Any

from schemas.config import Settings
from schemas.coverage import (
    ENCRYPTED,
    CoverageReport,
    NodeCoverage,
    UndecryptedFlows,
    decode_node_coverage,
    encode_node_coverage,
    tls_summary,
)
from schemas.errors import BrokerError

PUBLISH_EVERY_S = 10.0
_UNDECRYPTED_SQL = f"""
SELECT node,
       if(src_pod != '', concat(src_namespace, '/', src_pod), src_ip) AS client,
       if(dst_pod != '', concat(dst_namespace, '/', dst_pod),
          concat(dst_ip, ':', toString(dst_port))) AS server,
       count() AS flows,
       sum(request_body_size + response_body_size) AS bytes
FROM calls FINAL
WHERE has(flags, '{ENCRYPTED}') AND ts >= fromUnixTimestamp64Nano({{since:Int64}})
GROUP BY node, client, server
ORDER BY bytes DESC
LIMIT 1000
"""


class CoveragePublisher:
    """Publishes this node's coverage now and then (`maybe_publish`) and at the end."""

    def __init__(self, settings: Settings, every_s: float = PUBLISH_EVERY_S) -> None:
        from confluent_kafka import Producer

        self.topic = settings.coverage_topic
        self.every_s = every_s
        self._next = 0.0
        self._producer = Producer({**settings.kafka_client(), "log_level": 2, "linger.ms": 50})

    def maybe_publish(self, coverage: Any) -> None:
        """`coverage`: a NodeCoverage, or a function giving one (built only when due)."""
        if time.monotonic() < self._next:
            return
        self.publish(coverage() if callable(coverage) else coverage)

    def publish(self, coverage: NodeCoverage) -> None:
        self._next = time.monotonic() + self.every_s
        value = encode_node_coverage(coverage)
        self._producer.produce(self.topic, key=coverage.node.encode(), value=value)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout_s)


def read_nodes(settings: Settings, timeout_s: float = 10.0) -> list[NodeCoverage]:
    """Every node's newest coverage record on the topic (none: an empty list)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    topic = settings.coverage_topic
    consumer = Consumer(
        {
            **settings.kafka_client(),
            "group.id": "wiretide-coverage-reader",
            "log_level": 0,  # an unreachable broker is said once, as a BrokerError
            "enable.auto.commit": False,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=timeout_s)
        if topic not in md.topics or md.topics[topic].error is not None:
            return []
        newest: dict[bytes, NodeCoverage] = {}
        for p in md.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout_s)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)])
            _read_until(consumer, high, newest, time.monotonic() + timeout_s)
        return list(newest.values())
    except KafkaException as ex:
        raise BrokerError(f"cannot read {topic} from Kafka at {settings.kafka}: {ex}") from None
    finally:
        consumer.close()


def _read_until(consumer: Any, high: int, into: dict[bytes, NodeCoverage], deadline: float) -> None:
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        if msg.value() is None:  # a tombstone: the node is gone
            into.pop(msg.key(), None)
        else:
            try:
                into[msg.key()] = decode_node_coverage(msg.value())
            except Exception:  # noqa: BLE001 - another schema's record: not ours to show
                pass
        if msg.offset() >= high - 1:
            return


def undecrypted(store: Any, since_ns: int = 0) -> list[UndecryptedFlows]:
    """TLS flows seen only as ciphertext since `since_ns`, per node and pair of parties."""
    rows = store.client.query(_UNDECRYPTED_SQL, parameters={"since": since_ns}).result_rows
    return [UndecryptedFlows(str(n), str(c), str(s), int(f), int(b)) for n, c, s, f, b in rows]


def report(settings: Settings, store: Any | None, since_ns: int = 0) -> CoverageReport:
    """The nodes' newest facts, and the store's undecrypted flows (none without a store)."""
    nodes = read_nodes(settings)
    flows = undecrypted(store, since_ns) if store is not None else []
    return CoverageReport.build(nodes, flows)


class AgentCoverage:
    """A live capture's coverage: built from its sources, published every few seconds
    once Kafka is there (`attach`), and a last time when the capture ends."""

    def __init__(self, sources: list[Any], node: str, tls: bool, tls_problem: str = "") -> None:
        self.sources, self.node, self.tls, self.tls_problem = sources, node, tls, tls_problem
        self.publisher: CoveragePublisher | None = None
        self.final: NodeCoverage | None = None

    def facts(self) -> NodeCoverage:
        if self.final is not None:
            return self.final
        from producers.live import node_coverage

        return node_coverage(self.sources, self.node, tls=self.tls, tls_problem=self.tls_problem)

    def attach(self, settings: Settings) -> None:
        if self.publisher is None:
            self.publisher = CoveragePublisher(settings)

    def tick(self) -> None:
        if self.publisher is not None:
            self.publisher.maybe_publish(self.facts)

    def freeze(self) -> None:
        """The facts as the capture ends (called before its sources close)."""
        self.final = self.facts()

    def publish_final(self) -> None:
        if self.publisher is not None:
            self.publisher.publish(self.facts())
            self.publisher.flush()


def tls_line(facts: NodeCoverage, settings: Settings | None, since_ns: int = 0) -> str:
    """`--tls`'s last line: the processes hooked and not, and (`settings`: a tap's store)
    the TLS flows stored as ciphertext only since `since_ns` (left out when the store
    cannot be opened)."""
    from sinks.clickhouse.connect import open_store
    from sinks.errors import SinkError

    if facts.tls == "unavailable":
        return f"TLS: not captured ({facts.tls_problem})"
    flows: int | None = None
    if settings is None:  # an agent: the flows are counted where they are stored
        return tls_summary(facts.processes, flows)
    try:
        with open_store(
            settings.store_dsn, ttl_days=None, cluster=settings.clickhouse_cluster
        ) as s:
            flows = sum(u.flows for u in undecrypted(s, since_ns) if u.node == facts.node)
    except SinkError:
        pass
    return tls_summary(facts.processes, flows)
