"""The hub's reads: one open store, one query at a time (embedded chDB is not
thread-safe), and cursor paging back through history.

Pages are ordered newest first by (timestamp_ns, id), the order the reader already uses;
a cursor is the (timestamp_ns, id) of the last call of a page, made opaque so clients do
not build them. The next page is every matching call strictly before it, so a page
never repeats or skips a call even while new calls arrive.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from typing import Any

from sinks.clickhouse.connect import Store
from sinks.clickhouse.reader import read_calls
from sinks.errors import one_line
from wiretide.errors import WiretideError

# The reader takes `wt_*` parameters and KFL `kfl*`; ours start with `hub_`.
_BEFORE = (
    "(ts < fromUnixTimestamp64Nano({hub_ts:Int64}, 'UTC')"
    " OR (ts = fromUnixTimestamp64Nano({hub_ts:Int64}, 'UTC') AND call_id < {hub_id:String}))"
)
_INT64_MAX = 2**63 - 1


class CursorError(WiretideError):
    """A `before` cursor that this hub did not hand out."""


@dataclass(frozen=True, slots=True)
class Cursor:
    timestamp_ns: int
    call_id: str

    def encode(self) -> str:
        raw = f"{self.timestamp_ns}:{self.call_id}".encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            ts, call_id = raw.split(":", 1)
            value = int(ts)
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise CursorError(
                "bad cursor in 'before': pass the 'next' value of a previous page"
            ) from None
        if not 0 <= value <= _INT64_MAX or not ts.isdigit():
            raise CursorError("bad cursor in 'before': pass the 'next' value of a previous page")
        return cls(value, call_id)


@dataclass(frozen=True, slots=True)
class Page:
    calls: list[dict[str, Any]]  # newest first
    next: Cursor | None


class HubStore:
    """Thread-safe reads over one open `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Public: the sink that shares this store takes it around its inserts.
        self.lock = self._lock = threading.Lock()

    def page(
        self, where_sql: str, params: dict[str, object], limit: int, before: Cursor | None
    ) -> Page:
        conditions = [f"({where_sql})"] if where_sql else []
        bound = dict(params)
        if before is not None:
            conditions.append(_BEFORE)
            bound.update(hub_ts=before.timestamp_ns, hub_id=before.call_id)
        with self._lock:  # one more than asked: is there a next page?
            rows = read_calls(
                self.store, limit=limit + 1, where_sql=" AND ".join(conditions), params=bound
            )
        rows.reverse()
        calls = rows[:limit]
        more = len(rows) > limit and calls
        last = calls[-1] if more else None
        return Page(calls, Cursor(last["timestamp_ns"], last["id"]) if last else None)

    def get(self, call_id: str) -> dict[str, Any] | None:
        with self._lock:
            rows = read_calls(
                self.store,
                limit=1,
                where_sql="call_id = {hub_id:String}",
                params={"hub_id": call_id},
            )
        return rows[0] if rows else None

    def ping(self) -> str | None:
        """None when the store answers a query, else why not (one line)."""
        try:
            with self._lock:
                self.store.client.command("SELECT 1")
        except Exception as ex:  # any failure means not ready; say why
            return f"store {self.store.where} does not answer: {one_line(ex)}"
        return None

    def close(self) -> None:
        with self._lock:
            self.store.close()
