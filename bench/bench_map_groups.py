"""The service map grouped by workload against by namespace, on embedded chDB: CPU per
read (process time, chDB's threads included), median of 7 after a warm-up, from the view
and from `calls FINAL` (exact). Calls: bench_map.py's (40 workloads, 9 namespaces).

    python bench/bench_map_groups.py [--calls N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_map import make_calls  # noqa: E402

from sinks.clickhouse import CallWriter, open_store  # noqa: E402
from sinks.clickhouse.service_map import read_map  # noqa: E402

MINUTES = 60


def cpu_s(read, reps: int = 7) -> float:
    read()
    times = []
    for _ in range(reps):
        t = time.process_time()
        read()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300_000)
    n = ap.parse_args().calls
    start = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)
    until = start + timedelta(minutes=MINUTES)
    start_ns, span_ns = int(start.timestamp()) * 10**9, MINUTES * 60 * 10**9
    with tempfile.TemporaryDirectory() as d, open_store(f"chdb://{d}/store") as store:
        writer = CallWriter(store)
        for first in range(0, n, 10_000):
            writer.write(make_calls(min(10_000, n - first), start_ns, span_ns, n, first))
        for exact in (False, True):
            line = []
            for by in ("workload", "namespace"):
                graph = read_map(store, start, until, exact=exact, by=by)
                took = cpu_s(lambda by=by, x=exact: read_map(store, start, until, exact=x, by=by))
                line.append((by, took, len(graph.nodes), len(graph.edges)))
            (_, a, *_), (_, b, *_) = line
            figures = "  ".join(
                f"by {w}: {t * 1e3:.1f} ms CPU ({v} nodes, {e} edges)" for w, t, v, e in line
            )
            source = "calls FINAL" if exact else "view"
            print(f"{source:11}  {figures}  namespace/workload {b / a:.2f}")


if __name__ == "__main__":
    main()
