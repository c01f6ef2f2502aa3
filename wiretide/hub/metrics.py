"""GET /metrics on the hub: the RED metrics of the observed traffic, the consumer lag of
the pipeline's groups, and this process's own metrics, in Prometheus's text format.

RED metrics come from storage (sinks/clickhouse/red.py), not from a process that sees
calls go by: the writers are many and a call may pass a worker twice (a replay), while
the `red_totals` table counts each stored insert once, whichever writer made it, and
costs a scrape one small GROUP BY. Its label sets are bounded by construction (ddl.py):
workloads, not pods or IPs; methods from a known set, else "other"; status classes.

Every hub over the same store serves the same totals: scrape one hub (or take `max` over
hubs), not the sum. In `tap`, the counters of the tap's own processes (capture, workers,
writer: schemas/runtime/metrics.py) are added up here too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

from fastapi import Depends, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from schemas.config import Settings
from schemas.coverage import CoverageReport
from sinks.clickhouse.ddl import LATENCY_BUCKETS_S, RED_KEYS
from sinks.clickhouse.red import RedRow, read_red
from sinks.errors import SinkError
from wiretide.hub.store import HubStore

_log = logging.getLogger("wiretide.hub")
LABELS = list(RED_KEYS)


def _le(bound: float) -> str:
    return repr(float(bound))


_LE = [_le(b) for b in LATENCY_BUCKETS_S]


def red_families(rows: list[RedRow]) -> list:
    """The RED rows as metric families (sans-IO: also what the tests compare)."""
    calls = CounterMetricFamily("wiretide_calls", "API calls observed", labels=LABELS)
    errors = CounterMetricFamily(
        "wiretide_call_errors",
        "Failed calls (HTTP 5xx, a non-zero result code, no answer where one was expected)",
        labels=LABELS,
    )
    req = CounterMetricFamily(
        "wiretide_call_request_bytes", "Request body bytes on the wire", labels=LABELS
    )
    resp = CounterMetricFamily(
        "wiretide_call_response_bytes", "Response body bytes on the wire", labels=LABELS
    )
    latency = HistogramMetricFamily(
        "wiretide_call_duration_seconds",
        "Request's first byte to response's first byte, of answered calls",
        labels=LABELS,
    )
    for row in rows:
        labels = list(row.labels)
        calls.add_metric(labels, row.calls)
        errors.add_metric(labels, row.errors)
        req.add_metric(labels, row.request_bytes)
        resp.add_metric(labels, row.response_bytes)
        buckets = [*zip(_LE, row.buckets, strict=True), ("+Inf", row.answered)]
        latency.add_metric(labels, buckets, row.latency_s)
    return [calls, errors, req, resp, latency]


class RedCollector(Collector):
    def __init__(self, store: HubStore) -> None:
        self._store = store

    def collect(self) -> Iterator:
        up = GaugeMetricFamily("wiretide_hub_store_up", "1 if the store answered this scrape")
        try:
            with self._store.reading():  # one query at a time (see HubStore)
                rows = read_red(self._store.reads)
        except SinkError as ex:
            _log.warning("metrics: %s", ex)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from red_families(rows)


class LagCollector(Collector):
    """Messages each consumer group has not committed yet, per topic and partition: the
    stream workers on the segments, the writers on the calls. Asked of Kafka at most
    every `every_s` (a scrape does not wait on a slow broker more than that)."""

    def __init__(self, settings: Settings, every_s: float = 10.0) -> None:
        self._settings = settings
        self._every_s = every_s
        self._lock = threading.Lock()
        self._at = -every_s
        self._lags: list[tuple[str, str, int, int]] = []

    def collect(self) -> Iterator:
        with self._lock:
            if time.monotonic() - self._at >= self._every_s:
                self._at = time.monotonic()
                self._lags = self._read()
        lag = GaugeMetricFamily(
            "wiretide_consumer_lag_messages",
            "Messages a consumer group has not committed yet",
            labels=["group", "topic", "partition"],
        )
        for group, topic, partition, behind in self._lags:
            lag.add_metric([group, topic, str(partition)], behind)
        yield lag

    def _read(self) -> list[tuple[str, str, int, int]]:
        s = self._settings
        out = []
        for group, topic in ((s.streams_group, s.segments_topic), (s.sink_group, s.calls_topic)):
            out += [(group, topic, p, n) for p, n in partition_lag(s, group, topic)]
        return out


def partition_lag(settings: Settings, group: str, topic: str) -> list[tuple[int, int]]:
    """(partition, messages not committed) of `group` on `topic`; [] if Kafka cannot tell."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            **settings.kafka_client(),
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 2,
        }  # fmt: skip
    )
    try:
        md = consumer.list_topics(topic, timeout=5)
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        out = []
        for tp in consumer.committed(parts, timeout=5):
            low, high = consumer.get_watermark_offsets(tp, timeout=5)
            out.append((tp.partition, max(0, high - (tp.offset if tp.offset >= 0 else low))))
        return out
    except KafkaException as ex:
        _log.warning("metrics: consumer lag of %s: %s", group, ex)
        return []
    finally:
        consumer.close()


def coverage_families(report: CoverageReport) -> list:
    """What the nodes captured and decrypted (schemas/coverage.py) as gauges: the active
    capture sources, TLS processes hooked or not (with the short reason) per library, and
    the TLS flows stored as ciphertext only. Sans-IO: the tests compare them too."""
    sources = GaugeMetricFamily(
        "wiretide_capture_source_info",
        "Capture sources active on a node (1), with its TLS state (off, on, unavailable)",
        labels=["node", "source", "tls"],
    )
    processes = GaugeMetricFamily(
        "wiretide_tls_processes",
        "Processes doing TLS, by library, hooked or not, and why not",
        labels=["node", "library", "hooked", "reason"],
    )
    flows = GaugeMetricFamily(
        "wiretide_tls_undecrypted_flows",
        "TLS flows stored as ciphertext only (no plaintext captured)",
        labels=["node"],
    )
    size = GaugeMetricFamily(
        "wiretide_tls_undecrypted_bytes", "Bytes of those flows", labels=["node"]
    )
    for node in report.nodes:
        for source in node.sources:
            sources.add_metric([node.node, source, node.tls], 1)
        tally: dict[tuple[str, str, str], int] = {}
        for p in node.processes:
            key = (p.library, "true" if p.hooked else "false", p.short_reason)
            tally[key] = tally.get(key, 0) + 1
        for (library, hooked, reason), n in sorted(tally.items()):
            processes.add_metric([node.node, library, hooked, reason], n)
    for name in sorted({u.node for u in report.undecrypted}):
        n_flows, n_bytes = report.undecrypted_totals(name)
        flows.add_metric([name], n_flows)
        size.add_metric([name], n_bytes)
    return [sources, processes, flows, size]


class CoverageCollector(Collector):
    """The coverage report /api/coverage serves, read at most every `every_s` (it reads
    the coverage topic and the store)."""

    def __init__(self, store: HubStore, settings: Settings, every_s: float = 30.0) -> None:
        self._store, self._settings, self._every_s = store, settings, every_s
        self._lock = threading.Lock()
        self._at = -every_s
        self._families: list = []

    def collect(self) -> Iterator:
        with self._lock:
            if time.monotonic() - self._at >= self._every_s:
                self._at = time.monotonic()
                self._families = coverage_families(self._read())
        yield from self._families

    def _read(self) -> CoverageReport:
        from wiretide import coverage

        nodes, flows = [], []
        try:
            nodes = coverage.read_nodes(self._settings)
        except Exception as ex:  # noqa: BLE001 - Kafka away: the store's part still counts
            _log.warning("metrics: coverage topic: %s", ex)
        try:
            with self._store.reading():
                flows = coverage.undecrypted(self._store.reads)
        except Exception as ex:  # noqa: BLE001 - one line in the log, not a failed scrape
            _log.warning("metrics: undecrypted flows: %s", ex)
        return CoverageReport.build(nodes, flows)


class HubMetrics:
    """What GET /metrics answers: the hub's collectors, then this process's registry."""

    def __init__(self, store: HubStore, settings: Settings | None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RedCollector(store))
        if settings is not None and settings.kafka:
            self.registry.register(LagCollector(settings))
            self.registry.register(CoverageCollector(store, settings))

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(_own_registry())


def _own_registry() -> CollectorRegistry:
    """This process's metrics; in a tap (prometheus_client's multiprocess mode, see
    wiretide/cli/metrics_port.py) the sum over the tap's processes, ended ones included."""
    where = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not where:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=where)
    return registry


def add_route(app: FastAPI, store: HubStore, settings: Settings | None, require_access) -> None:  # noqa: ANN001
    """GET /metrics, behind the same token as /api (a ServiceMonitor sends it)."""
    metrics = HubMetrics(store, settings)

    @app.get("/metrics", dependencies=[Depends(require_access)], include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
