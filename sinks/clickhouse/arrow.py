"""ApiCalls → one Arrow table whose columns match the `calls` table (see ddl.py).

Column-wise and allocation-light: one list per column, headers as flat key/value
lists plus offsets for a MapArray. `ingested_at` is left to the table default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter

import pyarrow as pa

from schemas.records import ApiCall
from sinks.clickhouse.view import normalize_headers

_TS = pa.timestamp("ns", tz="UTC")
_HEADERS = pa.map_(pa.string(), pa.string())

# (column, ApiCall attribute = Avro field, Arrow type); order is the insert's column order.
PLAIN: tuple[tuple[str, str, pa.DataType], ...] = (
    ("call_id", "call_id", pa.string()),
    ("protocol", "protocol", pa.string()),
    ("ts", "ts_ns", _TS),
    ("flow_id", "flow_id", pa.string()),
    ("src_ip", "src_ip", pa.string()),
    ("src_port", "src_port", pa.uint16()),
    ("dst_ip", "dst_ip", pa.string()),
    ("dst_port", "dst_port", pa.uint16()),
    ("node", "node", pa.string()),
    ("source", "source", pa.string()),
    ("tls", "tls", pa.bool_()),
    ("method", "method", pa.string()),
    ("path", "path", pa.string()),
    ("query", "query", pa.string()),
    ("request_version", "request_version", pa.string()),
    ("request_body", "request_body", pa.large_binary()),
    ("request_body_size", "request_body_size", pa.uint64()),
    ("request_end_ns", "request_end_ns", pa.int64()),
    ("status", "status", pa.int32()),
    ("reason", "reason", pa.string()),
    ("response_version", "response_version", pa.string()),
    ("response_body", "response_body", pa.large_binary()),
    ("response_body_size", "response_body_size", pa.uint64()),
    ("response_ts_ns", "response_ts_ns", pa.int64()),
    ("response_end_ns", "response_end_ns", pa.int64()),
    ("elapsed_ns", "elapsed_ns", pa.int64()),
    ("src_pod", "src_pod", pa.string()),
    ("src_namespace", "src_namespace", pa.string()),
    ("src_service", "src_service", pa.string()),
    ("dst_pod", "dst_pod", pa.string()),
    ("dst_namespace", "dst_namespace", pa.string()),
    ("dst_service", "dst_service", pa.string()),
)
COLUMNS: tuple[str, ...] = (
    *(name for name, _, _ in PLAIN),
    "request_headers",
    "response_headers",
    "flags",
    "verdicts",
)


def calls_to_arrow(calls: Sequence[ApiCall]) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for name, attr, kind in PLAIN:
        values = list(map(attrgetter(attr), calls))
        columns[name] = _strings(values) if kind == pa.string() else pa.array(values, kind)
    columns["request_headers"] = _headers(calls, attrgetter("request_headers"))
    columns["response_headers"] = _headers(calls, attrgetter("response_headers"))
    columns["flags"] = _flags(calls)
    columns["verdicts"] = _verdicts(calls)
    return pa.table(columns)


def _strings(values: list[str]) -> pa.Array:
    """A string array; text Arrow cannot encode (lone surrogates) is replaced, not fatal."""
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowException, UnicodeEncodeError):
        return pa.array([_clean(v) for v in values], pa.string())


def _clean(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")


def _headers(calls: Sequence[ApiCall], get: Callable[[ApiCall], tuple]) -> pa.Array:
    offsets = [0]
    keys: list[str] = []
    values: list[str] = []
    for call in calls:
        headers = get(call)
        if headers:
            normal = normalize_headers(headers)
            keys.extend(normal)
            values.extend(normal.values())
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), _strings(keys), _strings(values), type=_HEADERS
    )


def _flags(calls: Sequence[ApiCall]) -> pa.Array:
    offsets = [0]
    flat: list[str] = []
    for call in calls:
        if call.flags:
            flat.extend(call.flags)
        offsets.append(len(flat))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _strings(flat))


def _verdicts(calls: Sequence[ApiCall]) -> pa.Array:
    """Lower-cased rule name → verdict (KFL folds map keys, as for header names); unique
    per call, as the rules file wants names unique regardless of case."""
    offsets = [0]
    keys: list[str] = []
    values: list[str] = []
    for call in calls:
        for rule, verdict in call.verdicts:
            keys.append(rule.lower())
            values.append(verdict)
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), _strings(keys), _strings(values), type=_HEADERS
    )
