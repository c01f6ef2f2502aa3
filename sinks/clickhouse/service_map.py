"""The service map of a time window: who called whom, over which protocol, how often,
how many failed, how many bytes, and how fast.

    graph = read_map(store, since, until)                   # from the service_map view
    graph = read_map(store, since, until, exact=True)       # from `calls FINAL`
    graph = read_map(store, since, until, to_sql(parse("dst.namespace == 'shop'")))

Windows are whole minutes (the view's resolution): every minute that overlaps
[since, until) is in, and `Graph.since`/`until` say which minutes were read.

Two sources, one definition (ddl.EDGE_SELECT):
* the `service_map` view (default): per-minute aggregate states, a few rows per edge
  and minute, so the map of a day costs about as much as the map of a minute. It counts
  inserts: a batch a writer replays after a crash is counted twice (see ddl.py).
* `calls FINAL` (`exact=True`, and always with a KFL filter, which can name any call
  field): each call once, at the price of reading every call of the window.

The view is the default because the map is looked at often and over long windows, and
its only inexactness is the rare replayed batch. bench/bench_map.py, 1M calls over an
hour, 80 edges, 2 cores: the hour's map takes 44 ms from the view, 387 ms from
`calls FINAL`; one minute 14 ms and 22 ms. The view costs the writer about 5 us per call
(45k calls/s against 59k without it) and holds 4,800 rows (0.5 MiB) for the hour.

Errors and latency follow ddl.ERROR_SQL and ddl.ANSWERED_SQL (what `status` means per
protocol, which calls expect no answer); quantiles are ClickHouse's `quantiles`
(reservoir sample of 8192 per state, interpolated), in milliseconds, None for an edge
with no answered call.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sinks.clickhouse.ddl import (
    CALLS,
    EDGE_KEYS,
    EDGE_SELECT,
    KIND_CODES,
    QUANTILES,
    SERVICE_MAP,
)
from sinks.errors import SinkError, one_line

if TYPE_CHECKING:
    from sinks.clickhouse.connect import Store

_MINUTE = timedelta(minutes=1)
_Q = ", ".join(map(str, QUANTILES))
_EDGE = ", ".join(k for k in EDGE_KEYS if k != "minute")
# Per edge over the window: the per-minute rows (view parts, or the exact inner query)
# merged into one. Parameter names start with map_ (KFL's are kfl*, the reader's wt_*).
_OUTER = f"""SELECT {_EDGE}, max(src_kind), max(dst_kind), sum(calls), sum(errors), sum(bytes),
    quantilesMerge({_Q})(latency)
FROM ({{inner}})
GROUP BY {_EDGE}
ORDER BY sum(calls) DESC, {_EDGE}"""
_VIEW_ROWS = (
    f"SELECT * FROM {SERVICE_MAP}"
    " WHERE minute >= toDateTime({map_since:Int64}, 'UTC')"
    " AND minute < toDateTime({map_until:Int64}, 'UTC')"
)
_CALL_WINDOW = (
    "ts >= toDateTime64({map_since:Int64}, 9, 'UTC')"
    " AND ts < toDateTime64({map_until:Int64}, 9, 'UTC')"
)
_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}


@dataclass(frozen=True, slots=True)
class Node:
    id: str  # "namespace/workload", or the workload alone outside the cluster
    workload: str
    namespace: str
    kind: str  # pod | service | ip


@dataclass(frozen=True, slots=True)
class Edge:
    src: str  # Node.id
    dst: str
    protocol: str
    calls: int
    errors: int
    bytes: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class Graph:
    since: datetime  # first minute read (UTC)
    until: datetime  # end of the last minute read
    exact: bool  # from calls FINAL (each call once), not the view
    nodes: tuple[Node, ...]  # sorted by namespace, then workload
    edges: tuple[Edge, ...]  # most calls first

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def minute_window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """[since, until) widened to whole minutes (UTC)."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("map window times must be timezone-aware")
    start = since.astimezone(UTC).replace(second=0, microsecond=0)
    end = until.astimezone(UTC)
    end_floor = end.replace(second=0, microsecond=0)
    end = end_floor if end == end_floor else end_floor + _MINUTE
    return start, max(end, start + _MINUTE)


def read_map(
    store: Store,
    since: datetime,
    until: datetime,
    kfl_where: tuple[str, dict] | None = None,
    *,
    exact: bool = False,
) -> Graph:
    """The map of the calls in the minutes overlapping [since, until); with `kfl_where`
    (the SQL and parameters of `wiretide.kfl.to_sql`), only of the calls it takes."""
    start, end = minute_window(since, until)
    params: dict[str, object] = {
        "map_since": int(start.timestamp()),
        "map_until": int(end.timestamp()),
    }
    where_sql = kfl_where[0].strip() if kfl_where else ""
    exact = exact or bool(where_sql)
    if exact:
        condition = _CALL_WINDOW + (f" AND ({where_sql})" if where_sql else "")
        params.update(kfl_where[1] if kfl_where else {})
        inner = (
            f"SELECT {EDGE_SELECT} FROM {CALLS} FINAL WHERE {condition}"
            f" GROUP BY {', '.join(EDGE_KEYS)}"
        )
    else:
        inner = _VIEW_ROWS
    try:
        rows = store.client.query(
            _OUTER.format(inner=inner), parameters=params, settings=_SETTINGS
        ).result_rows
    except Exception as ex:
        raise SinkError(f"cannot read the service map from {store.where}: {one_line(ex)}") from ex
    return _graph(start, end, exact, rows)


def graph_dict(graph: Graph) -> dict[str, Any]:
    """The graph as JSON values: what `GET /api/map` and `wiretide map --json` return."""
    return {
        "since": _rfc3339(graph.since),
        "until": _rfc3339(graph.until),
        "exact": graph.exact,
        "nodes": [asdict(n) for n in graph.nodes],
        "edges": [asdict(e) for e in graph.edges],
    }


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(namespace: str, workload: str) -> str:
    return f"{namespace}/{workload}" if namespace else workload


def _graph(start: datetime, end: datetime, exact: bool, rows: list) -> Graph:
    kinds: dict[tuple[str, str], int] = {}
    edges = []
    for s_ns, src, d_ns, dst, protocol, s_kind, d_kind, calls, errors, size, q in rows:
        for key, kind in (((s_ns, src), s_kind), ((d_ns, dst), d_kind)):
            kinds[key] = max(kinds.get(key, 0), int(kind))
        p50, p95, p99 = (_ms(v) for v in q)
        edges.append(
            Edge(
                node_id(s_ns, src),
                node_id(d_ns, dst),
                protocol,
                int(calls),
                int(errors),
                int(size),
                p50,
                p95,
                p99,
            )
        )
    nodes = tuple(
        Node(node_id(ns, workload), workload, ns, KIND_CODES[kind])
        for (ns, workload), kind in sorted(kinds.items())
    )
    return Graph(start, end, exact, nodes, tuple(edges))


def _ms(ns: float) -> float | None:
    return None if ns is None or math.isnan(ns) else round(ns / 1e6, 3)
