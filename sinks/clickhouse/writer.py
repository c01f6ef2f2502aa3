"""Writing batches of calls: one Arrow insert per batch, idempotent by call id.

Idempotency comes from the table (ReplacingMergeTree keyed on the call, read with
FINAL; see ddl.py), so a batch can be retried after any failure, and batches may
overlap. An insert that spans several days writes one part per day and is not atomic
across them; a failure raises, and retrying the whole batch is safe, so nothing is lost
and nothing is doubled. Calls repeated inside a batch are sent once (the last wins).
"""

from __future__ import annotations

from collections.abc import Sequence

from sinks.clickhouse.arrow import calls_to_arrow
from sinks.clickhouse.connect import Store
from sinks.clickhouse.ddl import CALLS
from sinks.errors import SinkError, one_line
from wiretide.records import ApiCall

# async_insert=0: a fire-and-forget insert would return before the rows are stored.
# optimize_on_insert=0: the batch is deduplicated here already, so ReplacingMergeTree's
# collapsing pass over each inserted block would only cost time (about half of it).
_INSERT_SETTINGS = {"async_insert": 0, "optimize_on_insert": 0}


class CallWriter:
    def __init__(self, store: Store) -> None:
        self._store = store

    def write(self, calls: Sequence[ApiCall]) -> None:
        """Insert `calls`; returns only once ClickHouse has them all, else raises SinkError."""
        if not calls:
            return
        batch = list({call.call_id: call for call in calls}.values())
        try:
            table = calls_to_arrow(batch)
        except Exception as ex:
            raise SinkError(f"cannot encode {len(batch)} calls for insert: {one_line(ex)}") from ex
        try:
            summary = self._store.client.insert_arrow(CALLS, table, settings=_INSERT_SETTINGS)
        except Exception as ex:
            raise SinkError(
                f"insert of {len(batch)} calls into {self._store.where} failed: {one_line(ex)}; "
                "the batch can be retried as is"
            ) from ex
        written = (summary.summary or {}).get("written_rows")
        if written is not None and int(written) < len(batch):
            raise SinkError(
                f"insert into {self._store.where} wrote {written} of {len(batch)} calls; "
                "the batch can be retried as is"
            )
