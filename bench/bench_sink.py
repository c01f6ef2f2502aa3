"""Throughput of the ClickHouse sink on embedded chDB, next to a bare Arrow insert.

    python bench/bench_sink.py [--calls N] [--batch B] [--per-message M] [--dir DIR]
    python bench/bench_sink.py --sizes B1,B2,... [--calls N] [--per-message M]

N typical small HTTP calls (8 request and 6 response headers, JSON bodies of ~150
bytes) are encoded as the worker sends them (CallBatch messages of M calls), and stored
from those messages in batches of B calls into a fresh chDB data dir, two ways:

* decoded: each message decoded to ApiCalls, which `CallWriter` turns into Arrow and
  inserts (what the sink did before issue 14, and still does when the fast way fails);
* as encoded: the messages handed to `CallWriter` as they came (sinks/clickhouse/
  encoded.py: chDB reads their records and builds the rows itself);
* replayed: the first half again as encoded with replay=True, as the sink writes a
  batch it may have stored already (writer.py, invariant 5): the lookup's cost, and no
  row inserted twice.

For each: CPU microseconds per call (decode + build + insert, this process's CPU time,
chDB's threads included) and how far the peak RSS rose above the RSS before it (VmHWM,
reset before each: the test data stays resident, so the rise is what storing costs). The
reference, measured in the same run, is `insert_arrow` of already built Arrow tables
(the engine's floor for Arrow). Then it writes the first half again (a replay), and
times reads with and without FINAL, which is what deduplication costs readers.

With --sizes, only the as-encoded way runs, once per batch size (a fresh store each):
what one insert's fixed cost weighs per call at each size, next to the RSS it costs (the
peak's rise, and what stays after the run). The sink's backlog_rows is chosen by it.

Rates are given by wall clock and by this process's CPU time (all threads, chDB's
included), which stays meaningful on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.records import ApiCall  # noqa: E402
from schemas.serde import call_batch_records, decode_call_batch, encode_call_batch  # noqa: E402
from sinks.clickhouse import CallWriter, count_calls, open_store, read_calls  # noqa: E402
from sinks.clickhouse.arrow import calls_to_arrow  # noqa: E402
from sinks.clickhouse.encoded import EncodedCalls  # noqa: E402

_PATHS = ["/api/v1/users", "/api/v1/orders", "/healthz", "/api/v1/catalogue", "/metrics"]


def make_calls(n: int, start_ns: int) -> list[ApiCall]:
    calls = []
    for i in range(n):
        ts = start_ns + i * 20_000
        path = _PATHS[i % len(_PATHS)]
        calls.append(
            ApiCall(
                call_id=f"{i:016x}-{start_ns:x}",
                protocol="http",
                ts_ns=ts,
                src_ip=f"10.1.{i % 7}.{i % 250}",
                src_port=30000 + i % 30000,
                dst_ip=f"10.2.0.{i % 13}",
                dst_port=8080,
                flow_id=f"tcp:10.1.{i % 7}.{i % 250}:{30000 + i % 30000}-10.2.0.{i % 13}:8080",
                node="node-a",
                source="afpacket",
                method="GET" if i % 3 else "POST",
                path=path,
                query=f"page={i % 10}&size=20",
                request_version="HTTP/1.1",
                request_headers=(
                    ("Host", f"svc-{i % 13}.prod.svc.cluster.local"),
                    ("User-Agent", "Go-http-client/1.1"),
                    ("Accept", "application/json"),
                    ("Accept-Encoding", "gzip"),
                    ("Content-Type", "application/json"),
                    ("X-Request-Id", f"{i:032x}"),
                    ("Traceparent", f"00-{i:032x}-{i:016x}-01"),
                    ("Authorization", "[REDACTED]"),
                ),
                request_body=b'{"user":"u%d","items":[1,2,3],"note":"hello"}' % i
                if i % 3 == 0
                else b"",
                request_body_size=48 if i % 3 == 0 else 0,
                request_end_ns=ts + 5_000,
                status=200 if i % 17 else 503,
                reason="OK" if i % 17 else "Service Unavailable",
                response_version="HTTP/1.1",
                response_headers=(
                    ("Content-Type", "application/json; charset=utf-8"),
                    ("Content-Length", "152"),
                    ("Date", "Wed, 01 May 2026 12:00:00 GMT"),
                    ("Server", "envoy"),
                    ("X-Envoy-Upstream-Service-Time", str(i % 90)),
                    ("Vary", "Accept-Encoding"),
                ),
                response_body=(
                    b'{"id":%d,"name":"item %d","price":12.5,"tags":["a","b"],'
                    b'"owner":{"id":7,"name":"Ada"},"created":"2026-05-01T12:00:00Z"}' % (i, i)
                ),
                response_body_size=152,
                response_ts_ns=ts + 1_000_000 + (i % 90) * 100_000,
                response_end_ns=ts + 1_100_000 + (i % 90) * 100_000,
            )
        )
    return calls


def batches(calls: list, size: int) -> list[list]:
    return [calls[i : i + size] for i in range(0, len(calls), size)]


def messages(calls: list[ApiCall], per_message: int) -> list[bytes]:
    """The calls as the worker publishes them: CallBatch messages of one flow each."""
    return [encode_call_batch(chunk[0].flow_id, chunk) for chunk in batches(calls, per_message)]


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def rss_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process."""
    found = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(found.group(1)) / 1024 if found else float("nan")


def store_decoded(writer: CallWriter, batch: list[bytes]) -> None:
    writer.write([call for message in batch for call in decode_call_batch(message)])


def store_encoded(writer: CallWriter, batch: list[bytes]) -> None:
    writer.write(EncodedCalls([(m, *call_batch_records(m)) for m in batch]))


def store_replayed(writer: CallWriter, batch: list[bytes]) -> None:
    """As encoded, as the sink writes a batch that may be stored already (a replay)."""
    writer.write(EncodedCalls([(m, *call_batch_records(m)) for m in batch]), replay=True)


def timed(store_batch, writer: CallWriter, message_batches: list[list[bytes]]) -> tuple:  # noqa: ANN001
    """(wall s, CPU s, how far the peak RSS rose in MB) storing every batch."""
    reset_peak_rss()
    before = rss_mb("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in message_batches:
        store_batch(writer, batch)
    return time.perf_counter() - t0, time.process_time() - c0, rss_mb("VmHWM") - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--per-message", type=int, default=50, help="calls per CallBatch")
    parser.add_argument("--dir", help="parent of the chDB data dirs (default: a temp dir)")
    parser.add_argument("--sizes", help="comma-separated batch sizes: as encoded only")
    args = parser.parse_args()
    if args.sizes:
        by_size([int(size) for size in args.sizes.split(",")], args)
        return

    if args.dir:
        run(Path(args.dir), args)
    else:
        with tempfile.TemporaryDirectory(prefix="wiretide-bench-") as tmp:
            run(Path(tmp), args)


def by_size(sizes: list[int], args: argparse.Namespace) -> None:
    """CPU us/call and RSS of storing as encoded, per batch size."""
    all_messages = messages(
        make_calls(args.calls, time.time_ns() - 3_600_000_000_000), args.per_message
    )
    print(f"calls: {args.calls}, {args.per_message} per message, as encoded")
    print(f"{'batch':>8}{'CPU us/call':>13}{'peak rise MB':>14}{'kept MB':>9}")
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp, open_store(f"chdb://{tmp}/s") as store:
            before = rss_mb("VmRSS")
            per_batch = max(1, size // args.per_message)
            _, cpu, rise = timed(store_encoded, CallWriter(store), batches(all_messages, per_batch))
            kept = rss_mb("VmRSS") - before
        print(f"{size:>8}{cpu / args.calls * 1e6:>13.2f}{rise:>14.0f}{kept:>9.0f}")


def run(base: Path, args: argparse.Namespace) -> None:
    start = time.time_ns() - 3_600_000_000_000
    calls = make_calls(args.calls, start)
    chunks = batches(calls, args.batch)
    n = len(calls)
    per_batch = max(1, args.batch // args.per_message)
    message_batches = batches(messages(calls, args.per_message), per_batch)

    with open_store(f"chdb://{base / 'writer'}") as store:
        writer = CallWriter(store)
        decoded = timed(store_decoded, writer, message_batches)
        store.client.command("TRUNCATE TABLE calls")
        encoded = timed(store_encoded, writer, message_batches)
        write_s, write_cpu = encoded[:2]
        half = message_batches[: len(message_batches) // 2]
        again = timed(store_replayed, writer, half)  # skips them all: nothing inserted
        again_n = sum(len(batch) for batch in half) * args.per_message
        rows = store.client.query("SELECT count() FROM calls").result_rows[0][0]
        assert rows == n, f"a replay=True write inserted {rows - n} calls again"

        t0 = time.perf_counter()
        for chunk in chunks[: len(chunks) // 2]:
            writer.write(chunk)  # decoded calls: the replay
        replay_s = time.perf_counter() - t0
        replayed = sum(len(c) for c in chunks[: len(chunks) // 2])

        t0, c0 = time.perf_counter(), time.process_time()
        tables = [calls_to_arrow(chunk) for chunk in chunks]
        encode_s, encode_cpu = time.perf_counter() - t0, time.process_time() - c0

        client = store.client
        t0 = time.perf_counter()
        total = count_calls(store)
        count_final_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw_rows = client.query("SELECT count() FROM calls").result_rows[0][0]
        count_raw_s = time.perf_counter() - t0

        scan = "SELECT status, count(), avg(elapsed_ns) FROM calls{} GROUP BY status"
        t0 = time.perf_counter()
        client.query(
            scan.format(" FINAL"), settings={"do_not_merge_across_partitions_select_final": 1}
        )
        scan_final_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        client.query(scan.format(""))
        scan_raw_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        recent = read_calls(store, limit=1000)
        read_s = time.perf_counter() - t0

    with open_store(f"chdb://{base / 'reference'}") as ref:
        t0, c0 = time.perf_counter(), time.process_time()
        for table in tables:
            ref.client.insert_arrow("calls", table, settings={"optimize_on_insert": 0})
        insert_s, insert_cpu = time.perf_counter() - t0, time.process_time() - c0

    print(f"calls: {n} in batches of {args.batch}, {args.per_message} per message, data dir {base}")
    print(f"{'from CallBatch messages':24}{'CPU us/call':>12}{'RSS rise MB':>13}{'wall s':>8}")
    for name, (wall, cpu, rss) in (("as encoded", encoded), ("decoded (old way)", decoded)):
        print(f"  {name:22}{cpu / n * 1e6:>12.2f}{rss:>13.0f}{wall:>8.2f}")
    print(f"  {'replayed (replay=True)':22}{again[1] / again_n * 1e6:>12.2f}{again[2]:>13.0f}"
          f"{again[0]:>8.2f}  ({again_n} calls stored already, none inserted)")  # fmt: skip
    floor = insert_cpu / n * 1e6
    print(f"reference insert_arrow  {floor:>12.2f}{'':>13}{insert_s:>8.2f}  (tables prebuilt)")
    print(f"{'':22}{'wall calls/s':>14}{'CPU calls/s':>14}")
    print(f"write as encoded      {n / write_s:>14,.0f}{n / write_cpu:>14,.0f}  ({write_s:.2f} s)")
    print(f"  encode to Arrow     {n / encode_s:>14,.0f}{n / encode_cpu:>14,.0f}")
    print(f"reference insert_arrow{n / insert_s:>14,.0f}{n / insert_cpu:>14,.0f}  (prebuilt)")
    print(f"replay of {replayed} calls {replayed / replay_s:>10,.0f} wall calls/s")
    print(f"stored rows {raw_rows}, distinct calls (FINAL) {total}")
    print(f"count(): FINAL {count_final_s * 1e3:.1f} ms, raw {count_raw_s * 1e3:.1f} ms")
    print(f"group-by scan: FINAL {scan_final_s * 1e3:.1f} ms, raw {scan_raw_s * 1e3:.1f} ms")
    print(f"read_calls(limit=1000): {read_s * 1e3:.1f} ms ({len(recent)} calls)")
    if total != n:
        sys.exit(f"FAIL: expected {n} distinct calls, found {total}")


if __name__ == "__main__":
    main()
