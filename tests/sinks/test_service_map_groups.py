"""The service map grouped by namespace, node totals and edge rates, on real embedded
chDB (calls made here, stored by the real CallWriter)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sinks.clickhouse import CallWriter
from sinks.clickhouse.service_map import read_map
from tests.sinks.test_service_map import T0, WINDOW, call, store  # noqa: F401


def test_grouped_by_namespace_workloads_merge_and_outsiders_stay(store):  # noqa: F811
    CallWriter(store).write(
        [
            call(1, elapsed_ms=1.0),  # shop/front -> shop/catalogue
            call(2, elapsed_ms=3.0, dst_service="cart"),  # shop/front -> shop/cart
            call(3, dst_namespace="cache", dst_service="redis", status=500),
            call(4, src_pod="", src_namespace="", src_service="", src_ip="192.0.2.7"),
        ]
    )
    for exact in (False, True):
        by_ns = read_map(store, *WINDOW, by="namespace", exact=exact)
        assert {(e.src, e.dst, e.calls, e.errors) for e in by_ns.edges} == {
            ("shop", "shop", 2, 0),
            ("shop", "cache", 1, 1),
            ("192.0.2.7", "shop", 1, 0),
        }
        assert {(n.id, n.kind, n.calls, n.errors) for n in by_ns.nodes} == {
            ("shop", "namespace", 4, 1),  # its call to itself once
            ("cache", "namespace", 1, 1),
            ("192.0.2.7", "ip", 1, 0),
        }
        [inside] = [e for e in by_ns.edges if e.src == e.dst]
        assert inside.p95_ms == pytest.approx(2.9, abs=0.01)  # merged, 1 and 3 ms
    by_workload = read_map(store, *WINDOW)
    assert {n.id: n.calls for n in by_workload.nodes} == {
        "shop/front": 3,
        "shop/catalogue": 2,
        "shop/cart": 1,
        "cache/redis": 1,
        "192.0.2.7": 1,
    }
    with pytest.raises(ValueError, match="group the map by workload or namespace"):
        read_map(store, *WINDOW, by="pod")


def test_rates_are_over_the_minutes_that_hold_calls(store):  # noqa: F811
    minute_ms = 60_000
    CallWriter(store).write([call(i, at_ms=(i % 3) * minute_ms) for i in range(30)])
    graph = read_map(store, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert graph.seconds == 180  # three minutes with calls, not the two hours asked
    [edge] = graph.edges
    assert edge.per_second == pytest.approx(30 / 180, abs=1e-4)
    one = read_map(store, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    assert (one.seconds, one.edges[0].calls) == (60, 10)
    empty = read_map(store, T0 - timedelta(hours=1), T0)
    assert (empty.seconds, empty.edges, empty.nodes) == (0, (), ())
