"""The service map of a time window: who called whom, over which protocol, how often,
how many failed, how many bytes, and how fast.

    graph = read_map(store, since, until)                   # from the service_map view
    graph = read_map(store, since, until, exact=True)       # from `calls FINAL`
    graph = read_map(store, since, until, to_sql(parse("dst.namespace == 'shop'")))
    graph = read_map(store, since, until, by="namespace")   # a node per namespace

Grouped `by="namespace"`, the workloads of a namespace are one node (kind `namespace`,
id the namespace) and their edges are merged (quantiles merged from their states, not
averaged); addresses outside the cluster stay nodes of their own.

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
_OUTER = f"""SELECT {{keys}}, max(src_kind), max(dst_kind), sum(calls), sum(errors), sum(bytes),
    quantilesMerge({_Q})(latency), min(minute), max(minute)
FROM ({{inner}})
GROUP BY {_EDGE}
ORDER BY sum(calls) DESC, {_EDGE}"""
# by namespace: a workload in the cluster becomes its namespace ('' as workload)
_BY = {
    "workload": _EDGE,
    "namespace": "src_namespace, if(src_namespace = '', src, '') AS src, "
    "dst_namespace, if(dst_namespace = '', dst, '') AS dst, protocol",
}
GROUPINGS = tuple(_BY)
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
    kind: str  # pod | service | ip, or namespace when grouped by namespace
    calls: int  # calls it made or answered (a call to itself once)
    errors: int


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
    per_second: float  # calls / Graph.seconds


@dataclass(frozen=True, slots=True)
class Graph:
    since: datetime  # first minute read (UTC)
    until: datetime  # end of the last minute read
    exact: bool  # from calls FINAL (each call once), not the view
    seconds: int  # the rates' span: first to end of last minute with calls (0: none)
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
    by: str = "workload",
) -> Graph:
    """The map of the calls in the minutes overlapping [since, until); with `kfl_where`
    (the SQL and parameters of `wiretide.kfl.to_sql`), only of the calls it takes;
    `by` one of GROUPINGS."""
    if by not in _BY:
        raise ValueError(f"group the map by {' or '.join(GROUPINGS)}, not {by!r}")
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
            _OUTER.format(keys=_BY[by], inner=inner), parameters=params, settings=_SETTINGS
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
        "seconds": graph.seconds,
        "nodes": [asdict(n) for n in graph.nodes],
        "edges": [asdict(e) for e in graph.edges],
    }


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(namespace: str, workload: str) -> str:
    """`namespace/workload`; the namespace alone for a namespace's node (no workload)."""
    return f"{namespace}/{workload}" if namespace and workload else namespace or workload


def _graph(start: datetime, end: datetime, exact: bool, rows: list) -> Graph:
    kinds: dict[tuple[str, str], int] = {}
    totals: dict[str, list[int]] = {}  # node id -> [calls, errors]
    spans: list[tuple[datetime, datetime]] = []
    edges = []
    for s_ns, src, d_ns, dst, protocol, s_kind, d_kind, calls, errors, size, q, lo, hi in rows:
        for key, kind in (((s_ns, src), s_kind), ((d_ns, dst), d_kind)):
            kinds[key] = max(kinds.get(key, 0), int(kind))
        ends = {node_id(s_ns, src), node_id(d_ns, dst)}  # one node for a call to itself
        for nid in ends:
            total = totals.setdefault(nid, [0, 0])
            total[0] += int(calls)
            total[1] += int(errors)
        spans.append((lo, hi))
        edges.append((node_id(s_ns, src), node_id(d_ns, dst), protocol, calls, errors, size, q))
    seconds = _seconds(start, end, spans)
    nodes = tuple(
        Node(
            node_id(ns, workload),
            workload,
            ns,
            "namespace" if ns and not workload else KIND_CODES[kind],
            *totals[node_id(ns, workload)],
        )
        for (ns, workload), kind in sorted(kinds.items())
    )
    return Graph(
        start,
        end,
        exact,
        seconds,
        nodes,
        tuple(
            Edge(s, d, p, int(c), int(e), int(b), *(_ms(v) for v in q), _rate(c, seconds))
            for s, d, p, c, e, b, q in edges
        ),
    )


def _seconds(start: datetime, end: datetime, spans: list[tuple[datetime, datetime]]) -> int:
    """From the first minute with calls to the end of the last, inside the window."""
    if not spans:
        return 0
    first = max(start, min(_utc(lo) for lo, _ in spans))
    last = min(end, max(_utc(hi) for _, hi in spans) + _MINUTE)
    return max(60, int((last - first).total_seconds()))


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _rate(calls: int, seconds: int) -> float:
    return round(int(calls) / seconds, 4) if seconds else 0.0


def _ms(ns: float) -> float | None:
    return None if ns is None or math.isnan(ns) else round(ns / 1e6, 3)
