"""The service map over 1M stored calls: the view against `calls FINAL`, on embedded chDB.

    python bench/bench_map.py [--calls N] [--minutes M] [--dir DIR]

Writes N calls (typical small HTTP calls plus postgres/redis/grpc, between 40 workloads'
pods, services and a few outside IPs, 5% failing) spread evenly over M minutes through
`CallWriter` in 10k batches, so the materialized view aggregates as the sink would.
Then times `read_map` for the whole span, for its last 15 minutes and for one minute:
from the view (the default), with exact=True (aggregating `calls FINAL`, the reference:
what the map costs without the view), and with a KFL filter (always from calls). Also
prints the insert rate with and without the view (what the view costs the writer) and
the two tables' sizes.
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

from schemas.records import ApiCall  # noqa: E402
from sinks.clickhouse import CallWriter, open_store  # noqa: E402
from sinks.clickhouse.service_map import read_map  # noqa: E402
from wiretide.kfl import parse, to_sql  # noqa: E402

_PROTOCOLS = [("http", 200, 500), ("postgresql", 0, 1), ("redis", 0, 1), ("grpc", 0, 14)]
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _pod(workload: int, replica: int) -> str:
    suffix = "".join(_SAFE[(workload * 7 + replica * 3 + k) % len(_SAFE)] for k in range(5))
    return f"svc{workload}-7d9c4b-{suffix}"


def make_calls(n: int, start_ns: int, span_ns: int, total: int, first: int = 0) -> list[ApiCall]:
    """Calls `first`..`first + n` of `total`, evenly over the span."""
    calls = []
    for j in range(n):
        i = first + j
        ts = start_ns + (i * span_ns // total) % span_ns
        src_w, dst_w = i % 40, (i * 7 + 3) % 40
        protocol, ok, bad = _PROTOCOLS[i % 4 if i % 10 else 0]
        outside = i % 97 == 0
        answered = i % 50 != 0
        calls.append(
            ApiCall(
                call_id=f"{i:016x}",
                protocol=protocol,
                ts_ns=ts,
                src_ip=f"10.1.{src_w}.{i % 3}" if not outside else f"192.0.2.{i % 5}",
                src_port=30000 + i % 30000,
                dst_ip=f"10.96.0.{dst_w}",
                dst_port=8080,
                flow_id=f"tcp:10.1.{src_w}.{i % 3}:{30000 + i % 30000}-10.96.0.{dst_w}:8080",
                method="GET",
                path=f"/api/v1/items/{i % 100}",
                request_body_size=120,
                status=(bad if i % 20 == 0 else ok) if answered else 0,
                response_body=b'{"ok":true}',
                response_body_size=400 + i % 200,
                response_ts_ns=ts + 1_000_000 + (i % 1000) * 20_000 if answered else 0,
                flags=() if answered else ("no_response",),
                src_pod="" if outside else _pod(src_w, i % 3),
                src_namespace="" if outside else f"ns{src_w % 4}",
                src_service="" if outside else f"svc{src_w}",
                dst_namespace=f"ns{dst_w % 4}",
                dst_service=f"svc{dst_w}",
            )
        )
    return calls


def _write(writer: CallWriter, calls: list[ApiCall], batch: int) -> float:
    t0 = time.perf_counter()
    for k in range(0, len(calls), batch):
        writer.write(calls[k : k + batch])
    return time.perf_counter() - t0


def _timed(fn, repeat: int = 7) -> tuple[float, object]:  # noqa: ANN001
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--dir", type=Path, help="data dir (default: a fresh temp dir)")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-map-"))
    start = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)
    start_ns = int(start.timestamp()) * 1_000_000_000
    span_ns = args.minutes * 60 * 1_000_000_000
    batch = 10_000
    with open_store(f"chdb://{base / 'chdb'}", ttl_days=0) as store:
        writer = CallWriter(store)
        # What the view costs the writer: the same 100k calls (other ids) without it first.
        probe = min(100_000, args.calls)
        store.client.command("DETACH TABLE service_map_mv")
        bare_s = _write(writer, make_calls(probe, start_ns, span_ns, args.calls, 10**12), batch)
        store.client.command("ATTACH TABLE service_map_mv")
        store.client.command(
            f"ALTER TABLE calls DELETE WHERE call_id >= '{10**12:016x}' SETTINGS mutations_sync = 1"
        )
        write_s = probe_s = 0.0
        for first in range(0, args.calls, batch):
            chunk = make_calls(min(batch, args.calls - first), start_ns, span_ns, args.calls, first)
            took = _write(writer, chunk, batch)
            write_s += took
            probe_s += took if first < probe else 0.0
        store.client.command("OPTIMIZE TABLE service_map FINAL")
        print(f"stored {args.calls} calls over {args.minutes} min in {base}")
        print(f"  insert, first {probe:,} calls: {probe / probe_s:>9,.0f} calls/s with the view,")
        print(f"  {probe / bare_s:>40,.0f} calls/s without it")
        rate = args.calls / write_s
        print(f"  insert, all {args.calls:,} calls: {rate:>9,.0f} calls/s with the view")
        sizes = store.client.query(
            "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts"
            " WHERE active AND table IN ('calls', 'service_map') GROUP BY table ORDER BY table"
        ).result_rows
        for table, rows, size in sizes:
            print(f"  {table:12s} {rows:>10,} rows {size / 2**20:>8.1f} MiB")
        end = start + timedelta(minutes=args.minutes)
        windows = [
            (f"{args.minutes} min", start, end),
            ("15 min", end - timedelta(minutes=15), end),
            ("1 min", end - timedelta(minutes=1), end),
        ]
        kfl = to_sql(parse('dst.namespace == "ns1"'))
        print(f"\n{'window':8s} {'view':>9s} {'exact':>9s} {'filtered':>9s}  calls  edges")
        for name, since, until in windows:
            view_s, graph = _timed(lambda s=since, u=until: read_map(store, s, u))
            exact_s, exact = _timed(lambda s=since, u=until: read_map(store, s, u, exact=True))
            kfl_s, _ = _timed(lambda s=since, u=until: read_map(store, s, u, kfl))
            calls = sum(e.calls for e in graph.edges)
            assert calls == sum(e.calls for e in exact.edges), "view and calls disagree"
            print(
                f"{name:8s} {view_s * 1e3:>7.1f}ms {exact_s * 1e3:>7.1f}ms {kfl_s * 1e3:>7.1f}ms"
                f"  {calls:>7,} {len(graph.edges):>5}"
            )


if __name__ == "__main__":
    main()
