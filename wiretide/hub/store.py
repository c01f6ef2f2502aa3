"""The hub's reads: one open store, one query at a time (embedded chDB is not
thread-safe), and cursor paging back through history.

Pages are ordered newest first by (timestamp_ns, id), the order the reader already uses;
a cursor is the (timestamp_ns, id) of the last call of a page, made opaque so clients do
not build them. The next page is every matching call strictly before it, so a page
never repeats or skips a call even while new calls arrive.

When a sink shares the store (`wiretide sink --serve`, the hub inside `tap`), the hub
reads an embedded store through a connection of its own (`Store.read_client`), so a read
runs beside an insert instead of waiting behind it (at 1k calls/s a poll waited ~1 s);
every such read is bounded in time. Writers still take turns (`StoreTurns`) with each
other, and with the reads of a server store, the writer first whenever it waits.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from schemas.errors import WiretideError
from sinks.clickhouse.connect import Store
from sinks.clickhouse.reader import read_calls
from sinks.errors import SinkError, one_line

# The reader takes `wt_*` parameters and KFL `kfl*`; ours start with `hub_`.
_BEFORE = (
    "(ts < fromUnixTimestamp64Nano({hub_ts:Int64}, 'UTC')"
    " OR (ts = fromUnixTimestamp64Nano({hub_ts:Int64}, 'UTC') AND call_id < {hub_id:String}))"
)
_INT64_MAX = 2**63 - 1
# The longest a hub query may hold the store: a writer waits at most this long for it.
QUERY_TIMEOUT_S = 30


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


class StoreTurns:
    """One query or insert at a time on a store (embedded chDB is not thread-safe), the
    writer first: readers wait while an insert is waiting. `with turns:` is the
    writer's turn (what SharedStoreWriter takes), `with turns.reading():` a reader's."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy = False
        self._writers_waiting = 0

    def __enter__(self) -> None:
        with self._changed:
            self._writers_waiting += 1
            try:
                self._changed.wait_for(lambda: not self._busy)
            finally:
                self._writers_waiting -= 1
            self._busy = True

    def __exit__(self, *exc: object) -> None:
        self._release()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._busy and not self._writers_waiting)
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @property
    def writers_waiting(self) -> int:
        return self._writers_waiting

    def _release(self) -> None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()


class _BoundedClient:
    """The store's client, every query carrying `max_execution_time`."""

    def __init__(self, client: Any, seconds: float) -> None:
        self._client, self._seconds = client, seconds

    def query(self, *args: Any, settings: dict[str, Any] | None = None, **kw: Any) -> Any:
        bounded = {"max_execution_time": self._seconds, **(settings or {})}
        return self._client.query(*args, settings=bounded, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class HubStore:
    """Thread-safe reads over one open `Store`. Route handlers that query it themselves
    do so `with hub_store.reading():` on `hub_store.reads` (the store, time-bounded)."""

    def __init__(self, store: Store, query_timeout_s: float = QUERY_TIMEOUT_S) -> None:
        self.store = store
        self.query_timeout_s = query_timeout_s
        # Only an embedded store is shared with a writer; a server's user may also be
        # read-only, and then may not set max_execution_time.
        if store.embedded:
            bounded = _BoundedClient(store.read_client(), query_timeout_s)
            self.reads = dataclasses.replace(store, client=bounded)
        else:
            self.reads = store
        # Public: the sink that shares this store takes it around its inserts.
        self.lock = self._turns = StoreTurns()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A reader's turn on the store (an embedded store's reads have their own
        connection: no turn to wait for); a query over the time bound says so in one line."""
        turn = contextlib.nullcontext() if self.store.embedded else self._turns.reading()
        with turn:
            try:
                yield
            except SinkError as ex:
                if "TIMEOUT_EXCEEDED" not in str(ex):
                    raise
                raise SinkError(
                    f"the query ran over {self.query_timeout_s:g} s and was stopped (the store "
                    "is shared with the writer); narrow the filter or the time range"
                ) from None

    def page(
        self, where_sql: str, params: dict[str, object], limit: int, before: Cursor | None
    ) -> Page:
        conditions = [f"({where_sql})"] if where_sql else []
        bound = dict(params)
        if before is not None:
            conditions.append(_BEFORE)
            bound.update(hub_ts=before.timestamp_ns, hub_id=before.call_id)
        with self.reading():  # one more than asked: is there a next page?
            rows = read_calls(
                self.reads, limit=limit + 1, where_sql=" AND ".join(conditions), params=bound
            )
        rows.reverse()
        calls = rows[:limit]
        more = len(rows) > limit and calls
        last = calls[-1] if more else None
        return Page(calls, Cursor(last["timestamp_ns"], last["id"]) if last else None)

    def get(self, call_id: str) -> dict[str, Any] | None:
        with self.reading():
            rows = read_calls(
                self.reads,
                limit=1,
                where_sql="call_id = {hub_id:String}",
                params={"hub_id": call_id},
            )
        return rows[0] if rows else None

    def ping(self) -> str | None:
        """None when the store answers a query, else why not (one line)."""
        try:
            with self.reading():
                self.reads.client.command("SELECT 1")
        except Exception as ex:  # any failure means not ready; say why
            return f"store {self.store.where} does not answer: {one_line(ex)}"
        return None

    def close(self) -> None:
        with self._turns:
            self.store.close()
