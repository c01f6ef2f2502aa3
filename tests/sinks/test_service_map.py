"""The service map view and its reader on real embedded chDB (no mocks). Calls are made
here (edge cases of naming, errors per protocol, windows); the map over real captures is
tests/e2e/test_map.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.records import ApiCall
from sinks.clickhouse import CallWriter, open_store
from sinks.clickhouse.ddl import migrate
from sinks.clickhouse.service_map import Graph, minute_window, read_map
from wiretide.kfl import parse, to_sql

# A fixed minute long ago: retention counts from insertion, so old calls are kept.
T0 = datetime(2024, 5, 6, 7, 8, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000
MS = 1_000_000


def call(i: int, at_ms: int = 0, elapsed_ms: float | None = 2.0, **fields) -> ApiCall:
    ts = T0_NS + at_ms * MS + i
    base = dict(
        call_id=f"c{i:05d}",
        protocol="http",
        ts_ns=ts,
        src_ip="10.1.0.1",
        src_port=40000 + i % 20000,
        dst_ip="10.2.0.1",
        dst_port=80,
        flow_id=f"tcp:10.1.0.1:{40000 + i % 20000}-10.2.0.1:80",
        method="GET",
        path="/",
        status=200,
        request_body_size=10,
        response_body_size=100,
        src_pod="front-7d9c4b-x2x9q",
        src_namespace="shop",
        src_service="front",
        dst_pod="",
        dst_namespace="shop",
        dst_service="catalogue",
    )
    if elapsed_ms is not None:
        base["response_ts_ns"] = ts + int(elapsed_ms * MS)
    else:
        base.update(status=0, response_body_size=0, flags=("no_response",))
    base.update(fields)
    return ApiCall(**base)


@pytest.fixture
def store(tmp_path: Path):
    with open_store(f"chdb://{tmp_path / 'store'}") as opened:
        yield opened


def edges(graph: Graph) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    return {(e.src, e.dst, e.protocol): (e.calls, e.errors, e.bytes) for e in graph.edges}


WINDOW = (T0, T0 + timedelta(minutes=10))


def test_workloads_are_owner_names_services_or_ips(store):
    CallWriter(store).write(
        [
            call(1),  # Deployment pod -> service IP
            call(2, dst_pod="db-0", dst_service="db", dst_ip="10.2.0.9"),  # StatefulSet
            call(3, src_pod="agent-x2x9q", src_namespace="kube-system", src_service=""),
            call(4, dst_pod="redis", dst_service="", dst_namespace="cache"),  # bare pod
            call(5, src_pod="", src_namespace="", src_service="", src_ip="192.0.2.7"),
            call(6, dst_pod="", dst_namespace="", dst_service="", dst_ip="198.51.100.1"),
        ]
    )
    graph = read_map(store, *WINDOW)
    assert set(edges(graph)) == {
        ("shop/front", "shop/catalogue", "http"),
        ("shop/front", "shop/db", "http"),
        ("kube-system/agent", "shop/catalogue", "http"),
        ("shop/front", "cache/redis", "http"),
        ("192.0.2.7", "shop/catalogue", "http"),
        ("shop/front", "198.51.100.1", "http"),
    }
    kinds = {n.id: (n.workload, n.namespace, n.kind) for n in graph.nodes}
    assert kinds == {
        "shop/front": ("front", "shop", "pod"),
        "shop/catalogue": ("catalogue", "shop", "service"),
        "shop/db": ("db", "shop", "pod"),
        "kube-system/agent": ("agent", "kube-system", "pod"),
        "cache/redis": ("redis", "cache", "pod"),
        "192.0.2.7": ("192.0.2.7", "", "ip"),
        "198.51.100.1": ("198.51.100.1", "", "ip"),
    }


def test_a_workload_reached_as_pod_and_as_service_is_one_node(store):
    CallWriter(store).write(
        [
            call(1, dst_pod="", dst_service="cart"),
            call(2, dst_pod="cart-5f6d8b9c7-x2x9q"),
        ]
    )
    graph = read_map(store, *WINDOW)
    assert edges(graph) == {("shop/front", "shop/cart", "http"): (2, 0, 220)}
    assert graph.node("shop/cart").kind == "pod"


ERROR_CASES = [
    # (protocol, fields, is an error)
    ("http", dict(status=500), True),
    ("http", dict(status=503), True),
    ("http", dict(status=404), False),
    ("http", dict(), False),
    ("http", dict(elapsed_ms=None), True),  # no answer
    ("gql", dict(status=200, flags=("graphql_error",)), True),
    ("http2", dict(status=502), True),
    ("grpc", dict(status=0), False),
    ("grpc", dict(status=14, reason="unavailable"), True),
    ("postgresql", dict(status=1), True),
    ("redis", dict(status=0), False),
    ("dns", dict(status=3, reason="NXDOMAIN"), False),  # search-path lookups
    ("dns", dict(status=2, reason="SERVFAIL"), True),
    ("websocket", dict(method="text", elapsed_ms=None), False),  # one-way message
    ("websocket", dict(method="close", status=1000), False),
    ("websocket", dict(method="close", status=1011), True),
    ("kafka", dict(method="Produce", elapsed_ms=None, request_headers=(("acks", "0"),)), False),
    ("kafka", dict(method="Produce", elapsed_ms=None, request_headers=(("acks", "1"),)), True),
    ("kafka", dict(method="Fetch", status=3), True),
    ("amqp", dict(method="basic.publish", elapsed_ms=None, flags=("oneway", "no_response")), False),
    ("mongodb", dict(elapsed_ms=None, flags=("more_to_come",)), False),
]


@pytest.mark.parametrize(("protocol", "fields", "failed"), ERROR_CASES)
def test_errors_follow_what_status_means_per_protocol(store, protocol, fields, failed):
    fine = 200 if protocol in ("http", "http2", "gql") else 0  # a call that went well
    CallWriter(store).write(
        [call(1, protocol=protocol, **fields), call(2, protocol=protocol, status=fine)]
    )
    for exact in (False, True):
        [edge] = read_map(store, *WINDOW, exact=exact).edges
        assert (edge.calls, edge.errors) == (2, int(failed))


def test_bytes_and_latency_quantiles_per_edge(store):
    answered = [call(i, at_ms=i, elapsed_ms=float(i)) for i in range(1, 101)]
    unanswered = [call(200, elapsed_ms=None, request_body_size=7)]
    push = [call(300, flags=("push",), elapsed_ms=0.0, response_body_size=5)]
    CallWriter(store).write(answered + unanswered + push)
    for exact in (False, True):
        [edge] = read_map(store, *WINDOW, exact=exact).edges
        assert edge.calls == 102
        assert edge.bytes == 100 * 110 + 7 + (10 + 5)
        # 1..100 ms answered; the unanswered call and the push are not latencies
        assert edge.p50_ms == pytest.approx(50.5, abs=0.01)
        assert edge.p95_ms == pytest.approx(95.05, abs=0.01)
        assert edge.p99_ms == pytest.approx(99.01, abs=0.01)


def test_an_edge_without_answers_has_no_latency(store):
    CallWriter(store).write([call(1, elapsed_ms=None)])
    [edge] = read_map(store, *WINDOW).edges
    assert (edge.p50_ms, edge.p95_ms, edge.p99_ms) == (None, None, None)


def test_window_is_whole_minutes_and_edges_sum_across_them(store):
    minute_ms = 60_000
    CallWriter(store).write(
        [call(i, at_ms=i * minute_ms + 30_000) for i in range(5)]  # one call in each minute
    )
    one_minute = read_map(
        store, T0 + timedelta(minutes=2, seconds=10), T0 + timedelta(minutes=2, seconds=11)
    )
    assert (one_minute.since, one_minute.until) == (
        T0 + timedelta(minutes=2),
        T0 + timedelta(minutes=3),
    )
    assert [e.calls for e in one_minute.edges] == [1]
    three = read_map(store, T0 + timedelta(minutes=1), T0 + timedelta(minutes=4))
    assert [e.calls for e in three.edges] == [3]
    assert read_map(store, T0 - timedelta(hours=1), T0).edges == ()
    assert [e.calls for e in read_map(store, *WINDOW).edges] == [5]
    assert [e.calls for e in read_map(store, *WINDOW, exact=True).edges] == [5]


def test_minute_window_rounds_outward():
    at = datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert minute_window(at, at) == (at.replace(second=0), at.replace(minute=1, second=0))
    whole = at.replace(second=0)
    assert minute_window(whole, whole + timedelta(minutes=2)) == (
        whole,
        whole + timedelta(minutes=2),
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        minute_window(datetime(2024, 1, 1), at)  # noqa: DTZ001


def test_a_kfl_filter_maps_only_the_calls_it_takes(store):
    CallWriter(store).write(
        [call(1), call(2, status=500), call(3, dst_pod="db-0", dst_service="db")]
    )
    where = to_sql(parse('dst.service.name == "db" or response.status >= 500'))
    graph = read_map(store, *WINDOW, where)
    assert graph.exact
    assert edges(graph) == {
        ("shop/front", "shop/catalogue", "http"): (1, 1, 110),
        ("shop/front", "shop/db", "http"): (1, 0, 110),
    }


def test_a_batch_written_twice_counts_twice_in_the_view_but_once_exactly(store):
    """What a writer replaying a batch after a crash does (see ddl.py): the view counts
    inserts; `calls FINAL`, hence exact=True, counts calls."""
    batch = [call(i) for i in range(10)]
    CallWriter(store).write(batch)
    CallWriter(store).write(batch)
    assert [e.calls for e in read_map(store, *WINDOW).edges] == [20]
    assert [e.calls for e in read_map(store, *WINDOW, exact=True).edges] == [10]


def test_calls_stored_before_the_map_existed_are_backfilled_once(tmp_path):
    dsn = f"chdb://{tmp_path / 'store'}"
    with open_store(dsn) as store:
        # a store as it was before migration 3, holding calls
        store.client.command("DROP TABLE service_map_mv")
        store.client.command("DROP TABLE service_map")
        store.client.command(
            "ALTER TABLE schema_migrations DELETE WHERE version = 3 SETTINGS mutations_sync = 1"
        )
        CallWriter(store).write([call(i) for i in range(4)])
        CallWriter(store).write([call(i) for i in range(4)])  # a replay, collapsed by FINAL
        assert migrate(store.client) == [3]
        assert [e.calls for e in read_map(store, *WINDOW).edges] == [4]
        CallWriter(store).write([call(9)])  # from now on the view counts
        assert migrate(store.client) == []
        assert [e.calls for e in read_map(store, *WINDOW).edges] == [5]
