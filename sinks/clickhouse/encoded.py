"""CallBatch messages into `calls` as they came off the wire: one INSERT, no Python per call.

The messages' ApiCall records are framed as an Avro container file (schemas.serde) and
ClickHouse reads it with its own Avro reader and builds the rows in SQL: the rows
arrow.calls_to_arrow makes from decoded calls (lower-cased header names, repeated ones
joined with ", ", elapsed time, ...). Decoding in Python and building Arrow cost several
times the insert itself.

Whatever the Python path would treat differently makes the insert fail instead, and
the caller then decodes the messages and writes the calls the ordinary way, which
rejects or dead-letters exactly what it must: text that is not UTF-8, a number out of
its column's range, a header or rule name that is not ASCII (lower-casing differs). So
does a message framed unlike our encoders (an array in several blocks), which the
container would misread: each message's block ends with a sentinel record at a known
row, and a sentinel out of place fails the insert. A batch that fails may be stored in
part; the table collapses the rows written again (writer.py, invariant 4).

Only an embedded store (chDB, which reads the file in-process) takes this path; a
server gets decoded calls.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from schemas.records import ApiCall
from schemas.serde import call_container_block, call_container_header, encode_call_record
from sinks.clickhouse.arrow import COLUMNS, PLAIN
from sinks.clickhouse.connect import Store
from sinks.clickhouse.ddl import CALLS
from sinks.errors import one_line

_SYNC = b"wiretide-calls\x00\x01"
_HEADER = call_container_header(_SYNC)
_MARK = "~wiretide:end-of-message~"
_SENTINEL = encode_call_record(
    ApiCall(
        call_id=_MARK, protocol="", ts_ns=0, src_ip="", src_port=0, dst_ip="", dst_port=0,
        flow_id="",
    )
)  # fmt: skip
_SHM = "/dev/shm"  # memory-backed where there is one: the file lives for one insert


@dataclass(frozen=True, slots=True)
class EncodedCalls:
    """CallBatch messages, each with where its calls lie: (message, number of calls, start,
    end) as schemas.serde.call_batch_records gives them."""

    messages: Sequence[tuple[bytes, int, int, int]]

    def __len__(self) -> int:
        return sum(count for _, count, _, _ in self.messages)


class NotTaken(Exception):
    """The store did not take the messages as they are: decode them, write the calls."""


def insert_encoded(store: Store, batch: EncodedCalls, *, skip_stored: bool = False) -> int:
    """Insert every call of `batch` (see the module notes), but with `skip_stored` those
    `calls` holds already (writer.py, invariant 5); returns how many rows it read."""
    if not store.embedded:
        raise NotTaken("a ClickHouse server takes decoded calls")
    try:  # a small or full /dev/shm (a pod's is 64 MiB) costs the fast path only
        fd, path = tempfile.mkstemp(
            prefix="wiretide-calls-", suffix=".avro", dir=_SHM if os.access(_SHM, os.W_OK) else None
        )
    except OSError as ex:
        raise NotTaken(one_line(ex)) from ex
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                sentinels = _write_container(out, batch.messages)
        except OSError as ex:
            raise NotTaken(one_line(ex)) from ex
        if not sentinels:
            return 0
        try:
            store.client.command(_insert_sql(path, sentinels, skip_stored))
        except Exception as ex:
            raise NotTaken(one_line(ex)) from ex
    finally:
        os.unlink(path)
    return sentinels[-1] + 1 - len(sentinels)


def _write_container(out: BinaryIO, messages: Sequence[tuple[bytes, int, int, int]]) -> list[int]:
    """Write the container of `messages`' records, one block per message ending with the
    sentinel; returns the sentinels' row numbers."""
    out.write(_HEADER)
    tail = _SENTINEL + _SYNC
    sentinels: list[int] = []
    row = 0
    for data, count, start, end in messages:
        if count:
            out.write(call_container_block(count + 1, end - start + len(_SENTINEL)))
            out.write(memoryview(data)[start:end])
            out.write(tail)
            row += count
            sentinels.append(row)
            row += 1
    return sentinels


def _pairs(column: str, ascii_names: bool) -> str:
    """Every (name, value) of an array column is UTF-8; names ASCII when asked."""
    names = "lengthUTF8(p.1) = length(p.1) AND " if ascii_names else ""
    return f"arrayAll(p -> {names}isValidUTF8(p.1) AND isValidUTF8(p.2), {column})"


def _headers(column: str) -> str:
    """normalize_headers in SQL: names lower-cased, a repeated name's values joined."""
    names = f"arrayMap(h -> lower(h.1), {column})"
    values = f"arrayMap(h -> h.2, {column})"
    unique = f"arrayDistinct({names})"
    joined = (
        f"arrayMap(k -> arrayStringConcat(arrayFilter((v, n) -> n = k, {values}, {names}),"
        f" ', '), {unique})"
    )
    return (
        f"if(length({unique}) = length({column}), mapFromArrays({names}, {values}),"
        f" mapFromArrays({unique}, {joined}))"
    )


_TEXT = [attr for _, attr, kind in PLAIN if str(kind) == "string"]
# The rows the Python path would store as they are: see the module notes.
_SAME_AS_DECODED = " AND ".join(
    [
        *(f"isValidUTF8({attr})" for attr in _TEXT),
        _pairs("request_headers", True),
        _pairs("response_headers", True),
        _pairs("verdicts", True),
        "arrayAll(f -> isValidUTF8(f), flags)",
        "src_port BETWEEN 0 AND 65535 AND dst_port BETWEEN 0 AND 65535",
        "ts_ns >= 0 AND response_ts_ns >= 0",  # the time column; elapsed_ns fits
        "request_body_size >= 0 AND response_body_size >= 0",
    ]
)
_EXPRESSIONS = {
    **{column: attr for column, attr, _ in PLAIN},
    "ts": "fromUnixTimestamp64Nano(ts_ns, 'UTC')",
    "elapsed_ns": "if(response_ts_ns != 0, response_ts_ns - ts_ns, -1)",
    "request_headers": _headers("request_headers"),
    "response_headers": _headers("response_headers"),
    "flags": "flags",
    "verdicts": "mapFromArrays(arrayMap(v -> lower(v.1), verdicts), arrayMap(v -> v.2, verdicts))",
}
# async_insert=0, optimize_on_insert=0: as writer.py's; max_threads=1: one reader keeps
# rowNumberInAllBlocks() the row's place in the file; max_block_size: the file is read
# in smaller blocks (a 30k-call insert peaked ~50 MB lower, at no cost in CPU).
_SETTINGS = "async_insert = 0, optimize_on_insert = 0, max_threads = 1, max_block_size = 8192"


def _not_stored(path: str) -> str:
    """The file's calls that `calls` does not hold: looked up within the file's time range
    (partitions and the sorting key's hour prune) by the call id index."""
    calls = f"FROM file('{path}', 'Avro') WHERE call_id != '{_MARK}'"
    ts = "fromUnixTimestamp64Nano({}(ts_ns), 'UTC')"
    return (
        f"\n  AND call_id NOT IN (SELECT call_id FROM {CALLS} WHERE ts BETWEEN"
        f" (SELECT {ts.format('min')} {calls}) AND (SELECT {ts.format('max')} {calls})"
        f" AND call_id IN (SELECT call_id {calls}))"
    )


def _insert_sql(path: str, sentinels: list[int], skip_stored: bool = False) -> str:
    if "'" in path or "\\" in path:
        raise NotTaken(f"cannot name {path!r} in SQL")
    at_sentinel = f"rowNumberInAllBlocks() IN ({', '.join(map(str, sentinels))})"
    return (
        f"INSERT INTO {CALLS} ({', '.join(COLUMNS)})\n"
        f"SELECT {', '.join(_EXPRESSIONS[column] for column in COLUMNS)}\n"
        f"FROM file('{path}', 'Avro')\n"
        f"WHERE throwIf((call_id = '{_MARK}') != ({at_sentinel}), 'misframed message') = 0\n"
        f"  AND call_id != '{_MARK}'\n"
        f"  AND throwIf(NOT ({_SAME_AS_DECODED}), 'a call to decode first') = 0"
        f"{_not_stored(path) if skip_stored else ''}\n"
        f"SETTINGS {_SETTINGS}"
    )
