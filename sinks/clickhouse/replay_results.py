"""The `replay_results` table: one row per replayed copy of a call, and its reads.

Kept out of the calls migrations (ddl.py): it is small, written by a replay run itself
and created on first use (`ensure_table`, idempotent), so a store whose calls were
written by an older release gains it without a migration step.

Summary columns serve the lists (runs, counts, latency) and the filters; `record` holds
the whole `ReplayResult` as its Avro message (both sides' headers and bodies, the recorded
call), so a result read back is exactly the one written. ReplacingMergeTree on (run,
call, copy), read with FINAL: a result written twice (a retried insert) is shown once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from schemas.records import endpoint
from schemas.replay import ReplayResult
from schemas.serde import decode_replay_result, encode_replay_result
from sinks.clickhouse.connect import Store
from sinks.errors import SinkError, one_line

REPLAY_RESULTS = "replay_results"


@contextmanager
def _failing(what: str, store: Store) -> Iterator[None]:
    """A store failure as one line (SinkError), never a driver traceback."""
    try:
        yield
    except SinkError:
        raise
    except Exception as ex:  # the driver raises many kinds
        raise SinkError(f"cannot {what} in {store.where}: {one_line(ex)}") from ex


_CREATE = f"""
CREATE TABLE IF NOT EXISTS {REPLAY_RESULTS}
(
    run_id LowCardinality(String),
    call_id String,
    copy UInt32,
    sent_ns Int64,
    outcome LowCardinality(String),
    protocol LowCardinality(String),
    method LowCardinality(String),
    path String,
    dst String,
    recorded_status Int32,
    status Int32,
    recorded_latency_ns Int64,
    latency_ns Int64,
    differences UInt32,
    error String,
    record String CODEC(ZSTD(3)),
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (run_id, call_id, copy)
"""
COLUMNS = (
    "run_id", "call_id", "copy", "sent_ns", "outcome", "protocol", "method", "path", "dst",
    "recorded_status", "status", "recorded_latency_ns", "latency_ns", "differences", "error",
    "record",
)  # fmt: skip


REPLAY_RESULTS_LOCAL = "replay_results_local"


def create_statements(cluster: str = "") -> tuple[str, ...]:
    """The table on one server; on a cluster, replicated shards (`replay_results_local`)
    behind a Distributed `replay_results` sharded by run, so a result written twice lands
    on the same shard and collapses there, and a run's report reads one shard's rows."""
    if not cluster:
        return (_CREATE,)
    on = f" ON CLUSTER '{cluster}'"
    local = _CREATE.replace(
        f"IF NOT EXISTS {REPLAY_RESULTS}\n", f"IF NOT EXISTS {REPLAY_RESULTS_LOCAL}{on}\n"
    ).replace(
        "ENGINE = ReplacingMergeTree\n",
        "ENGINE = ReplicatedReplacingMergeTree("
        f"'/clickhouse/tables/{{shard}}/{{database}}/{REPLAY_RESULTS_LOCAL}', '{{replica}}')\n",
    )
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {REPLAY_RESULTS}{on} AS {REPLAY_RESULTS_LOCAL} ENGINE ="
        f" Distributed('{cluster}', currentDatabase(), {REPLAY_RESULTS_LOCAL}, cityHash64(run_id))"
    )
    return (local, distributed)


def ensure_table(store: Store) -> None:
    with _failing(f"create table {REPLAY_RESULTS}", store):
        for statement in create_statements(store.config.cluster):
            store.client.command(statement)


def destination(call: Any) -> str:
    """Where the recorded call went: its service, else ip:port."""
    return call.dst_service or endpoint(call.dst_ip, call.dst_port)


def _row(r: ReplayResult) -> list[Any]:
    call = r.recorded
    return [
        r.run_id, call.call_id, r.copy, r.sent_ns, r.outcome, call.protocol, call.method,
        call.path, destination(call), call.status, r.status if r.answered else -1,
        call.elapsed_ns, r.latency_ns if r.answered else -1, len(r.differences), r.error,
        encode_replay_result(r),
    ]  # fmt: skip


def insert_results(store: Store, results: Sequence[ReplayResult]) -> None:
    if not results:
        return
    with _failing(f"store {len(results)} replay results", store):
        store.client.insert(
            REPLAY_RESULTS,
            [_row(r) for r in results],
            column_names=COLUMNS,
            settings={"async_insert": 0},
        )


def _query(store: Store, sql: str, **kw: Any) -> Any:
    with _failing("read replay results", store):
        return store.client.query(sql, **kw)


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    first_ns: int
    last_ns: int
    total: int
    matched: int
    changed: int
    failed: int


def _exists(store: Store) -> bool:
    rows = _query(
        store,
        "SELECT count() FROM system.tables"
        " WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": REPLAY_RESULTS},
    ).result_rows
    return bool(rows and rows[0][0])


_SUMMARY = (
    "SELECT run_id, min(sent_ns), max(sent_ns), count(), countIf(outcome = 'matched'),"
    f" countIf(outcome = 'changed'), countIf(outcome = 'failed') FROM {REPLAY_RESULTS} FINAL"
)


def read_runs(store: Store, limit: int = 100) -> list[RunSummary]:
    """The runs stored, newest first."""
    if not _exists(store):
        return []
    rows = _query(
        store,
        _SUMMARY + " GROUP BY run_id ORDER BY min(sent_ns) DESC LIMIT {n:UInt32}",
        parameters={"n": limit},
    ).result_rows
    return [RunSummary(str(r[0]), *(int(v) for v in r[1:])) for r in rows]


def read_run(store: Store, run_id: str) -> RunSummary | None:
    """One run's summary, None if no result of it is stored."""
    if not _exists(store):
        return None
    rows = _query(
        store, _SUMMARY + " WHERE run_id = {r:String} GROUP BY run_id", parameters={"r": run_id}
    ).result_rows
    return RunSummary(str(rows[0][0]), *(int(v) for v in rows[0][1:])) if rows else None


def read_latencies(store: Store, run_id: str) -> tuple[list[int], list[int]]:
    """(recorded, replayed) latencies in ns of a run's results, those measured."""
    if not _exists(store):
        return [], []
    rows = _query(
        store,
        f"SELECT recorded_latency_ns, latency_ns FROM {REPLAY_RESULTS} FINAL"
        " WHERE run_id = {r:String}",
        parameters={"r": run_id},
    ).result_rows
    return [int(a) for a, _ in rows if a >= 0], [int(b) for _, b in rows if b >= 0]


def read_results(
    store: Store, run_id: str, outcomes: Iterable[str] = (), limit: int = 10_000
) -> list[ReplayResult]:
    """A run's results (of the given outcomes; all when none), in the order they were sent."""
    if not _exists(store):
        return []
    wanted = list(outcomes)
    where = "run_id = {r:String}" + (" AND outcome IN {o:Array(String)}" if wanted else "")
    rows = _query(
        store,
        f"SELECT record FROM {REPLAY_RESULTS} FINAL WHERE {where}"
        " ORDER BY sent_ns, call_id, copy LIMIT {n:UInt32}",
        parameters={"r": run_id, "o": wanted, "n": limit},
        column_formats={"record": "bytes"},
    ).result_rows
    return [decode_replay_result(bytes(r[0])) for r in rows]
