"""What the RED totals view (ddl.py, migration 9: /metrics counts each stored call once,
in ClickHouse) costs the writer: the same calls stored as encoded (the sink's way on
chDB) into a fresh store with the view, and into one without it (the reference, the
view dropped), in the same run, alternating, each a fresh data dir.

    python bench/bench_red.py [--calls N] [--batch B] [--rounds R]

Reported per way: CPU microseconds per call (this process's CPU time, chDB's threads
included: meaningful on a shared machine), the ratio to the reference, and the scrape
read (read_red) time over what was stored.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sink import batches, make_calls, messages, store_encoded  # noqa: E402
from sinks.clickhouse import CallWriter, open_store  # noqa: E402
from sinks.clickhouse.ddl import RED_TOTALS_VIEW  # noqa: E402
from sinks.clickhouse.red import read_red  # noqa: E402


def one(with_view: bool, message_batches: list, n: int) -> tuple[float, float]:
    """(CPU us per call to store, ms to read the totals)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"chdb://{tmp}", ttl_days=7)
        if not with_view:
            store.client.command(f"DROP VIEW {RED_TOTALS_VIEW}")
        writer = CallWriter(store)
        cpu = time.process_time()
        for batch in message_batches:
            store_encoded(writer, batch)
        per_call = (time.process_time() - cpu) / n * 1e6
        started = time.perf_counter()
        rows = read_red(store)
        read_ms = (time.perf_counter() - started) * 1e3
        assert (sum(r.calls for r in rows) == n) is with_view
        store.close()
    return per_call, read_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    calls = make_calls(args.calls, 1_700_000_000_000_000_000)
    msgs = messages(calls, 100)
    message_batches = batches(msgs, max(1, args.batch // 100))
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for with_view in (False, True):
            results[with_view].append(one(with_view, message_batches, args.calls))
    ref = min(cpu for cpu, _ in results[False])
    for with_view, label in ((False, "without the view (reference)"), (True, "with red_totals")):
        cpu = min(c for c, _ in results[with_view])
        read = min(r for _, r in results[with_view])
        print(f"{label:30} {cpu:7.2f} CPU us/call  {cpu / ref:5.2f}x  read_red {read:6.1f} ms")


if __name__ == "__main__":
    main()
