"""The hub's reads of an embedded store a sink shares run beside a long insert, on their
own chDB connection, instead of waiting behind it (issue 14: capture -> queryable); the
insert still lands whole, and closing the store closes the readers' connection too."""

from __future__ import annotations

import threading
from pathlib import Path

from sinks.clickhouse import CallWriter, open_store
from sinks.clickhouse.reader import count_calls
from tests.hub.test_serve import real_calls
from wiretide.hub.serve import SharedStoreWriter
from wiretide.hub.store import HubStore

_SLOW_ROWS = 20  # one second each: the insert outlasts any page read here by far
_SLOW_INSERT = (
    "INSERT INTO calls (call_id, protocol, ts) SELECT concat('slow-', toString(number)),"
    " 'http', now() FROM numbers({rows}) WHERE sleepEachRow(1) = 0"
    " SETTINGS max_block_size = 1, async_insert = 0"
)


class _SlowWriter:
    """A writer whose insert takes ~_SLOW_ROWS seconds (what a 100k-call batch costs)."""

    def __init__(self, store: object, started: threading.Event) -> None:
        self._store, self._started = store, started

    def write(self, calls: list, *, replay: bool = False) -> list:
        self._started.set()  # within the writer's turn: SharedStoreWriter holds it
        self._store.client.command(_SLOW_INSERT.format(rows=len(calls)))
        return []


def test_a_page_is_read_while_an_insert_holds_the_writers_turn(tmp_path: Path) -> None:
    calls = real_calls()
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        CallWriter(store).write(calls)
        hub = HubStore(store)
        started, done = threading.Event(), threading.Event()
        writer = SharedStoreWriter(_SlowWriter(store, started), hub.lock)

        def insert() -> None:
            writer.write([None] * _SLOW_ROWS)
            done.set()

        inserting = threading.Thread(target=insert)
        inserting.start()
        assert started.wait(60)
        page = hub.page("", {}, 100, None)
        answered_during_insert = not done.is_set()
        inserting.join(300)
        assert sorted(c["id"] for c in page.calls) == sorted(c.call_id for c in calls)
        assert answered_during_insert, "the read waited for the insert"
        assert count_calls(store) == len(calls) + _SLOW_ROWS
        assert len(hub.page("", {}, 1000, None).calls) == len(calls) + _SLOW_ROWS

    # The readers' connection closed with the store: another data dir opens in-process.
    with open_store(f"chdb://{tmp_path / 'other'}") as other:
        assert count_calls(other) == 0
