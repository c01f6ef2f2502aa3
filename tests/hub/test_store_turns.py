"""The hub's reads and a sink's inserts on one store take turns, the writer first, and a
query cannot hold the store for longer than the hub's time bound."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sinks.clickhouse import CallWriter, open_store
from sinks.clickhouse.reader import count_calls
from sinks.errors import SinkError
from tests.hub.test_serve import real_calls
from wiretide.hub.serve import SharedStoreWriter
from wiretide.hub.store import HubStore, StoreTurns


def test_a_waiting_insert_goes_before_the_queries_queued_behind_it() -> None:
    turns = StoreTurns()
    order: list[str] = []
    query_running = threading.Event()
    finish_query = threading.Event()

    def first_query() -> None:
        with turns.reading():
            query_running.set()
            finish_query.wait(60)
            order.append("first query")

    def insert() -> None:
        with turns:
            order.append("insert")

    def next_query() -> None:
        with turns.reading():
            order.append("next query")

    threads = [threading.Thread(target=first_query)]
    threads[0].start()
    assert query_running.wait(60)
    threads.append(threading.Thread(target=insert))
    threads[1].start()
    while not turns.writers_waiting:  # the insert is queued behind the first query
        time.sleep(0.01)
    threads.append(threading.Thread(target=next_query))
    threads[2].start()
    finish_query.set()
    for t in threads:
        t.join(60)
    assert order == ["first query", "insert", "next query"]


def test_a_query_over_the_time_bound_is_stopped_in_one_line_and_the_insert_goes_on(
    tmp_path: Path,
) -> None:
    calls = real_calls()
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        hub = HubStore(store, query_timeout_s=1)
        writer = SharedStoreWriter(CallWriter(store), hub.lock)
        endless = "(SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3) > 0"
        inserted = threading.Event()

        def insert_while_querying() -> None:
            writer.write(calls)
            inserted.set()

        with pytest.raises(SinkError) as stopped:
            threading.Timer(0.2, insert_while_querying).start()
            hub.page(endless, {}, 10, None)
        assert str(stopped.value) == (
            "the query ran over 1 s and was stopped (the store is shared with the writer); "
            "narrow the filter or the time range"
        )
        assert inserted.wait(60)
        assert count_calls(store) == len(calls)
        stored = hub.page("", {}, 100, None).calls
        assert sorted(c["id"] for c in stored) == sorted(c.call_id for c in calls)
