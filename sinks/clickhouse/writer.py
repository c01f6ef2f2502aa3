"""Writing batches of calls into `calls`: the contract.

`CallWriter(store).write(calls) -> rejected` (a list of `RejectedCall`):

0. `calls` may also be CallBatch messages as they came (`EncodedCalls`): stored whole
   in one insert, or `NotTaken` is raised and nothing is promised (some may be stored,
   see 4): decode them and write the calls (encoded.py).

1. On return, ClickHouse holds every call of `calls` except the rejected ones.
2. A call is rejected only for its own data: it cannot become a row of the columns
   (Arrow conversion), or ClickHouse refuses the insert for its data (a data error
   code; the batch is bisected down to the calls it refuses). Each has a one-line reason.
   The good calls beside a bad one are stored.
3. When the store cannot take writes at all (server down, full disk, read-only data
   dir, any error that is not about the data), `write` raises `StoreUnavailable` and
   rejects nothing: the caller waits and retries the same batch.
4. Idempotent: the table is a ReplacingMergeTree keyed on the call and read with FINAL
   (ddl.py), so a batch can be retried after any failure, and batches may overlap;
   calls repeated inside a batch are sent once (the last wins). An insert spanning
   several days writes one part per day and is not atomic across them, nor is a batch
   bisected by (2) and cut short by (3); retrying it whole stores each call once.
5. `write(calls, replay=True)`: the calls `calls` already holds are not written again.
   The views on `calls` (red_totals, service_map: ddl.py) count rows as they are
   inserted, so a call written twice is counted twice even though FINAL collapses it;
   a batch that may have been stored before (a writer that crashed between its insert
   and its Kafka commit, a retry after (3) or after NotTaken) is written this way, and
   each call is counted once. It costs a lookup of the batch's call ids (by time range
   and the call id index), so only such batches pay it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence

import pyarrow as pa

from schemas.records import ApiCall
from schemas.serde import RejectedCall
from sinks.clickhouse.arrow import calls_to_arrow
from sinks.clickhouse.connect import Store
from sinks.clickhouse.ddl import CALLS
from sinks.clickhouse.encoded import EncodedCalls, insert_encoded
from sinks.errors import SinkError, one_line

# async_insert=0: a fire-and-forget insert would return before the rows are stored.
# optimize_on_insert=0: the batch is deduplicated here already, so ReplacingMergeTree's
# collapsing pass over each inserted block would only cost time (about half of it).
_INSERT_SETTINGS = {"async_insert": 0, "optimize_on_insert": 0}

# ClickHouse error codes that mean "these rows", not "this store": parse, type, range
# and size errors. Any other failure is the store's (invariant 3).
_DATA_ERRORS = frozenset({6, 26, 27, 38, 41, 43, 53, 69, 70, 72, 117, 131, 190, 321, 407})
_CODE = re.compile(r"\bCode: (\d+)\b")
_PURGE_EVERY_S = 5.0
# Call ids per lookup of a replayed batch: ~40 bytes each inline, well under 256 KiB of SQL.
_IDS_PER_LOOKUP = 2000
_TOO_WIDE = "Too many partitions for single INSERT block"  # many days: smaller batches do


class StoreUnavailable(SinkError):
    """The store takes no writes right now; nothing was rejected, retry the batch."""


class CallWriter:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._purged = -_PURGE_EVERY_S  # when freed memory was last handed back

    def write(
        self, calls: Sequence[ApiCall] | EncodedCalls, *, replay: bool = False
    ) -> list[RejectedCall]:
        """Store `calls`; returns the rejected ones (see the module contract)."""
        try:
            if isinstance(calls, EncodedCalls):  # (0)
                insert_encoded(self._store, calls, skip_stored=replay)  # (5)
                return []
            batch = list({call.call_id: call for call in calls}.values())  # (4) sent once
            if replay and batch:  # (5)
                stored = self._stored_ids(batch)
                batch = [call for call in batch if call.call_id not in stored]
            good, table, rejected = _to_arrow(batch)  # (2) the calls with no row form
            if good:
                rejected += self._insert(good, table)
            return rejected
        finally:
            self._give_back_memory()

    def _give_back_memory(self) -> None:
        """chDB's allocator keeps the pages an insert freed (~250 MB after 30k calls) for
        later; an embedded store's writer hands them back, so its RSS is what it uses. At
        most every few seconds: a purge costs about a quarter of a small insert."""
        now = time.monotonic()
        if self._store.embedded and now >= self._purged + _PURGE_EVERY_S:
            self._purged = now
            with contextlib.suppress(Exception):  # a build without jemalloc: nothing kept
                self._store.client.command("SYSTEM JEMALLOC PURGE")

    def _stored_ids(self, batch: list[ApiCall]) -> set[str]:
        """The call ids of `batch` that `calls` holds already (5)."""
        times = [call.ts_ns for call in batch]
        query = (
            f"SELECT DISTINCT call_id FROM {CALLS}"
            " WHERE ts BETWEEN fromUnixTimestamp64Nano(toInt64(%(lo)s), 'UTC')"
            " AND fromUnixTimestamp64Nano(toInt64(%(hi)s), 'UTC') AND call_id IN %(ids)s"
        )
        window = {"lo": max(0, min(times)), "hi": max(0, max(times))}
        ids = [call.call_id for call in batch]
        stored: set[str] = set()
        try:
            # The ids go inline in the SQL: in slices that stay under max_query_size (256 KiB).
            for at in range(0, len(ids), _IDS_PER_LOOKUP):
                part = tuple(ids[at : at + _IDS_PER_LOOKUP])
                rows = self._store.client.query(query, parameters={**window, "ids": part})
                stored.update(row[0] for row in rows.result_rows)
        except Exception as ex:
            raise StoreUnavailable(
                f"cannot look up which calls {self._store.where} holds: {one_line(ex)}; "
                "the batch can be retried as is"
            ) from ex
        return stored

    def _insert(self, calls: list[ApiCall], table: pa.Table) -> list[RejectedCall]:
        """Insert `calls` (as `table`), bisecting on data errors down to the calls refused."""
        try:
            summary = self._store.client.insert_arrow(CALLS, table, settings=_INSERT_SETTINGS)
        except Exception as ex:
            if not _about_the_data(ex):  # (3) halves already stored are retried: (4)
                raise StoreUnavailable(
                    f"insert of {len(calls)} calls into {self._store.where} failed: "
                    f"{one_line(ex)}; the batch can be retried as is"
                ) from ex
            if len(calls) == 1:  # (2) the store refuses this call's data
                reason = f"store refused call {calls[0].call_id}: {one_line(ex)}"
                return [RejectedCall(calls[0], reason)]
            halves = calls[: len(calls) // 2], calls[len(calls) // 2 :]
            return [bad for half in halves for bad in self._insert(half, calls_to_arrow(half))]
        written = (summary.summary or {}).get("written_rows")  # (1), or retry whole: (3)
        if written is not None and int(written) < len(calls):
            raise StoreUnavailable(
                f"insert into {self._store.where} wrote {written} of {len(calls)} calls; "
                "the batch can be retried as is"
            )
        return []


def _to_arrow(batch: list[ApiCall]) -> tuple[list[ApiCall], pa.Table, list[RejectedCall]]:
    """(the calls that convert to columns, their table; the calls that do not)."""
    try:
        return batch, calls_to_arrow(batch), []
    except Exception:
        pass
    good, rejected = [], []
    for call in batch:
        try:
            calls_to_arrow([call])
            good.append(call)
        except Exception as ex:
            reason = f"cannot convert call {call.call_id} to columns: {one_line(ex)}"
            rejected.append(RejectedCall(call, reason))
    return good, calls_to_arrow(good), rejected


def _about_the_data(ex: Exception) -> bool:
    text = str(ex)
    code = _CODE.search(text)
    return _TOO_WIDE in text or (code is not None and int(code.group(1)) in _DATA_ERRORS)
