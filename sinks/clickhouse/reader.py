"""Reading calls back, deduplicated, as the nested dicts of view.py.

Deduplication is FINAL: duplicates are identical rows within one partition, so
ClickHouse only merges overlapping ranges inside each day partition
(`do_not_merge_across_partitions_select_final`), and rows in parts that no longer
overlap pass straight through. `LIMIT 1 BY call_id` or argMax would hash every
selected row instead.

A filter may run before that merge (`optimize_move_to_prewhere_if_final`, off by
default because a filter could keep an older version of a row): the copies of a call
are identical rows, so a condition keeps all of them or none, and PREWHERE reads the
filter's columns first and the rest only for the granules that match.

A page (`limit`) is the newest matching calls. Sorting every match by time reads every
column of every match, so the page is first looked for among the calls of the newest
hour stored, then day, then all: the sorting key and partitions skip older data, and a
window that holds `limit` matches holds the newest ones (any match outside is older).
The newest time stored comes from the parts' min/max index, not a scan.

`where_sql` is a SQL condition over the `calls` columns (ddl.py), normally made by the
KFL compiler; its values must be bound parameters (`{name:Type}` placeholders with
`params`), never pasted into the text. Parameter names starting with `wt_` are taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from schemas.records import ApiCall
from sinks.clickhouse.connect import Store
from sinks.clickhouse.ddl import CALLS
from sinks.clickhouse.view import call_view
from sinks.errors import SinkError, one_line

# Select list: ApiCall field name → SQL expression.
_FIELDS: dict[str, str] = {
    "call_id": "call_id",
    "protocol": "protocol",
    "ts_ns": "toUnixTimestamp64Nano(ts)",
    "src_ip": "src_ip",
    "src_port": "src_port",
    "dst_ip": "dst_ip",
    "dst_port": "dst_port",
    "flow_id": "flow_id",
    "node": "node",
    "source": "source",
    "tls": "tls",
    "method": "method",
    "path": "path",
    "query": "query",
    "request_version": "request_version",
    "request_headers": "request_headers",
    "request_body": "request_body",
    "request_body_size": "request_body_size",
    "request_end_ns": "request_end_ns",
    "status": "status",
    "reason": "reason",
    "response_version": "response_version",
    "response_headers": "response_headers",
    "response_body": "response_body",
    "response_body_size": "response_body_size",
    "response_ts_ns": "response_ts_ns",
    "response_end_ns": "response_end_ns",
    "flags": "flags",
    "src_pod": "src_pod",
    "src_namespace": "src_namespace",
    "src_service": "src_service",
    "dst_pod": "dst_pod",
    "dst_namespace": "dst_namespace",
    "dst_service": "dst_service",
    "verdicts": "verdicts",
}
_SELECT = ", ".join(expr if expr == name else f"{expr} AS {name}" for name, expr in _FIELDS.items())
_BYTES = {"request_body": "bytes", "response_body": "bytes"}
FINAL_SETTINGS = {
    "do_not_merge_across_partitions_select_final": 1,
    "optimize_move_to_prewhere_if_final": 1,
}
# Small blocks keep a streamed read's memory flat: ClickHouse's default (65k rows) of
# calls with bodies is hundreds of MB per block on the Python side.
_STREAM_SETTINGS = {**FINAL_SETTINGS, "max_block_size": 2000}
_SLICE_CALLS = 20_000


def read_calls(
    store: Store,
    *,
    protocol: str | None = None,
    limit: int | None = None,
    where_sql: str = "",
    params: dict | None = None,
) -> list[dict[str, Any]]:
    """Matching calls, oldest first (by ts, then call id); with `limit`, the newest
    `limit` of them, still oldest first."""
    where, bound = _where(protocol, where_sql, params)
    if limit is None:
        sql = f"SELECT {_SELECT} FROM {CALLS} FINAL{where} ORDER BY ts, call_id"
        return [call_view(call) for call in _calls(store, sql, bound)]
    limit = max(int(limit), 0)
    newest = _newest_ns(store) if limit else None
    for window in (_HOUR_NS, 24 * _HOUR_NS, None) if newest else (None,):
        condition = where
        if window is not None:
            since = "ts >= fromUnixTimestamp64Nano({wt_since:Int64}, 'UTC')"
            condition = f"{where} AND {since}" if where else f" WHERE {since}"
            bound["wt_since"] = newest - window
        sql = (
            f"SELECT {_SELECT} FROM {CALLS} FINAL{condition}"
            f" ORDER BY ts DESC, call_id DESC LIMIT {limit}"
        )
        rows = _calls(store, sql, bound)
        if len(rows) == limit or window is None:
            break
    rows.reverse()
    return [call_view(call) for call in rows]


_HOUR_NS = 3600 * 10**9


def _newest_ns(store: Store) -> int | None:
    """Capture time of the newest stored call (None: none stored)."""
    rows = _query(store, f"SELECT toUnixTimestamp64Nano(max(ts)), count() FROM {CALLS}", {})
    newest, stored = rows.result_rows[0]
    return int(newest) if stored else None


def _calls(store: Store, sql: str, bound: dict) -> list[ApiCall]:
    result = _query(store, sql, bound)
    names = result.column_names
    return [_call(dict(zip(names, row, strict=True))) for row in result.result_rows]


def _query(store: Store, sql: str, bound: dict) -> Any:
    try:
        return store.client.query(
            sql, parameters=bound, settings=FINAL_SETTINGS, column_formats=_BYTES
        )
    except Exception as ex:
        raise SinkError(f"cannot read calls from {store.where}: {one_line(ex)}") from ex


def stream_calls(
    store: Store, *, where_sql: str = "", params: dict | None = None
) -> Iterator[dict[str, Any]]:
    """Every matching call, oldest first, yielded as ClickHouse sends its blocks, so a
    reader's memory stays flat however many match. Read in time slices of about
    `_SLICE_CALLS` calls: ClickHouse sorts one slice at a time (embedded chDB never
    spills a big sort to disk, so one ORDER BY over every call holds them all)."""
    for low, high in _time_slices(store, where_sql, params):
        bounds = ["ts >= fromUnixTimestamp64Nano({wt_low:Int64}, 'UTC')"] if low else []
        bounds += ["ts < fromUnixTimestamp64Nano({wt_high:Int64}, 'UTC')"] if high else []
        asked = [f"({where_sql})"] if where_sql.strip() else []
        edges = {k: v for k, v in (("wt_low", low), ("wt_high", high)) if v is not None}
        where, bound = _where(None, " AND ".join(asked + bounds), {**(params or {}), **edges})
        sql = f"SELECT {_SELECT} FROM {CALLS} FINAL{where} ORDER BY ts, call_id"
        with _stream(store, sql, bound) as stream:
            names = stream.source.column_names
            for block in _blocks(stream, store.where):
                for row in block:
                    yield call_view(_call(dict(zip(names, row, strict=True))))


def _time_slices(
    store: Store, where_sql: str, params: dict | None
) -> list[tuple[int | None, int | None]]:
    """[low, high) capture-time bounds (ns; None: open) of about `_SLICE_CALLS` matching
    calls each; calls of one instant share a slice, as do a call's stored copies."""
    where, bound = _where(None, where_sql, params)
    sql = (
        f"SELECT toUnixTimestamp64Nano(ts) AS t, count() FROM {CALLS} FINAL{where} "
        "GROUP BY t ORDER BY t"
    )
    cuts: list[int] = []
    in_slice = 0
    with _stream(store, sql, bound) as stream:
        for block in _blocks(stream, store.where):
            for at, calls in block:
                if in_slice and in_slice + calls > _SLICE_CALLS:
                    cuts.append(int(at))
                    in_slice = 0
                in_slice += calls
    if not in_slice and not cuts:
        return []
    edges: list[int | None] = [None, *cuts, None]
    return list(zip(edges, edges[1:], strict=False))


def _stream(store: Store, sql: str, bound: dict) -> Any:
    try:
        return store.client.query_row_block_stream(
            sql, parameters=bound, settings=_STREAM_SETTINGS, column_formats=_BYTES
        )
    except Exception as ex:
        raise SinkError(f"cannot read calls from {store.where}: {one_line(ex)}") from ex


def _blocks(stream: Iterable[list], where: str) -> Iterator[list]:
    """The stream's blocks; a failure mid-stream is a SinkError like any other read."""
    blocks = iter(stream)
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except Exception as ex:
            raise SinkError(f"cannot read calls from {where}: {one_line(ex)}") from ex
        yield block


def count_calls(store: Store, protocol: str | None = None) -> int:
    """How many distinct calls are stored (of one protocol, if given)."""
    where, bound = _where(protocol, "", None)
    try:
        result = store.client.query(
            f"SELECT count() FROM {CALLS} FINAL{where}", parameters=bound, settings=FINAL_SETTINGS
        )
    except Exception as ex:
        raise SinkError(f"cannot count calls in {store.where}: {one_line(ex)}") from ex
    return int(result.result_rows[0][0])


def _where(protocol: str | None, where_sql: str, params: dict | None) -> tuple[str, dict]:
    bound = dict(params or {})
    conditions = []
    if protocol is not None:
        conditions.append("protocol = {wt_protocol:String}")
        bound["wt_protocol"] = protocol
    if where_sql.strip():
        conditions.append(f"({where_sql})")
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), bound


def _call(row: dict[str, Any]) -> ApiCall:
    row["request_headers"] = tuple(row["request_headers"].items())
    row["response_headers"] = tuple(row["response_headers"].items())
    row["flags"] = tuple(row["flags"])
    row["verdicts"] = tuple(row["verdicts"].items())
    return ApiCall(**row)
