"""Bytes on disk per stored call, per column, next to compressed JSON of the same calls.

    python bench/bench_storage.py [--calls N] [--batch B] [--dir DIR]
    python bench/bench_storage.py --store DIR     # a data dir `wiretide tap` filled

Writes N (default 200,000) small REST calls as a cluster sees them (8 request and 6
response headers, one of them a random x-request-id; a ~150-byte JSON response body,
small JSON request bodies on writes; ids from the dissector's own `call_id`, so as random
as real ones; Kubernetes identity on both sides) through `CallWriter` in batches of B
into a fresh chDB data dir, then merges the table (`OPTIMIZE ... FINAL`: what a day's
partition becomes on disk) and prints the compressed bytes per call from system.parts
and, per column, from system.columns with the column's type and codec, and the skip
indexes' bytes. `--store` measures the calls of an existing data dir instead (open it
after its pipeline has stopped; it is migrated to the current schema first).

Reference, in the same run: the same calls as `wiretide query --json` prints them
(JSON lines of `call_view`), compressed with gzip -6, per call.
"""

from __future__ import annotations

import argparse
import calendar
import gzip
import json
import random
import sys
import tempfile
import time
from email.utils import formatdate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.records import ApiCall  # noqa: E402
from sinks.clickhouse import CallWriter, Store, open_store, read_calls  # noqa: E402
from sinks.clickhouse.ddl import CALLS  # noqa: E402
from streams.dissect.base import call_id  # noqa: E402

BASE = calendar.timegm((2026, 5, 1, 12, 0, 0, 0, 0, 0)) * 10**9
TARGET = 100  # bytes per small REST call (issue 14)

_SERVICES = ("catalogue", "orders", "users", "cart", "payment")
_PATHS = (
    ("GET", "/api/v1/catalogue", True),
    ("GET", "/api/v1/users/{id}", False),
    ("GET", "/api/v1/orders/{id}", False),
    ("POST", "/api/v1/orders", False),
    ("PUT", "/api/v1/cart/{id}", False),
    ("DELETE", "/api/v1/cart/{id}", False),
    ("GET", "/healthz", False),
)
_WEIGHTS = (30, 20, 20, 10, 8, 4, 8)
_AGENTS = ("Go-http-client/1.1", "okhttp/4.12.0", "python-requests/2.32.3")
_STATUS = {"GET": 200, "POST": 201, "PUT": 200, "DELETE": 204}
_REASON = {
    200: "OK",
    201: "Created",
    204: "No Content",
    404: "Not Found",
    503: "Service Unavailable",
}


def make_calls(n: int, seed: int = 14) -> list[ApiCall]:
    """`n` calls at ~1,000 calls/s over 64 keep-alive connections between pods."""
    rng = random.Random(seed)
    flows = []
    for f in range(64):
        service = _SERVICES[f % len(_SERVICES)]
        src_ip, dst_ip = f"10.1.{f % 4}.{10 + f}", f"10.2.0.{1 + f % len(_SERVICES)}"
        src_port = rng.randrange(32768, 61000)
        flows.append(
            {
                "service": service,
                "src_ip": src_ip,
                "src_port": src_port,
                "dst_ip": dst_ip,
                "flow_id": f"tcp:{src_ip}:{src_port}-{dst_ip}:8080",
                "src_pod": f"frontend-7d9c4b8f6d-{rng.randrange(36**5):05x}",
                "dst_pod": f"{service}-5f6b7c9d8-{rng.randrange(36**5):05x}",
                "agent": _AGENTS[f % len(_AGENTS)],
                "seq": rng.randrange(2**32),
            }
        )
    calls = []
    ts = BASE
    for _ in range(n):
        ts += rng.randrange(1, 2_000_000)
        flow = flows[rng.randrange(len(flows))]
        method, template, paged = rng.choices(_PATHS, _WEIGHTS)[0]
        item = rng.randrange(1, 100_000)
        path = template.replace("{id}", str(item))
        status = _STATUS[method] if rng.random() > 0.03 else rng.choice((404, 503))
        elapsed = int(rng.lognormvariate(14, 0.6))  # ~1.2 ms median
        request_body = b""
        if method in ("POST", "PUT"):
            request_body = b'{"item":%d,"quantity":%d,"note":"gift wrap"}' % (
                item,
                rng.randrange(1, 9),
            )
        response_body = b""
        if status in (200, 201):
            response_body = (
                b'{"id":%d,"name":"item-%d","price":%d.%02d,"currency":"EUR","stock":%d,'
                b'"tags":["new","sale"],"owner":{"id":%d,"name":"shop-%d"},'
                b'"updated":"2026-05-01T12:%02d:%02dZ"}'
                % (
                    item,
                    item % 977,
                    rng.randrange(1, 500),
                    rng.randrange(100),
                    rng.randrange(1000),
                    item % 50,
                    item % 50,
                    rng.randrange(60),
                    rng.randrange(60),
                )
            )
        elif status >= 400:
            response_body = b'{"error":"%s"}' % _REASON[status].lower().encode()
        host = f"{flow['service']}.prod.svc.cluster.local:8080"
        seq = flow["seq"]
        flow["seq"] = (seq + 200 + len(path) + len(request_body)) % 2**32
        response_ts = ts + 40_000 + elapsed
        calls.append(
            ApiCall(
                call_id=call_id(flow["flow_id"], seq, ts),
                protocol="http",
                ts_ns=ts,
                src_ip=flow["src_ip"],
                src_port=flow["src_port"],
                dst_ip=flow["dst_ip"],
                dst_port=8080,
                flow_id=flow["flow_id"],
                node="node-1",
                source="afpacket",
                method=method,
                path=path,
                query=f"page={rng.randrange(1, 20)}&size=20" if paged else "",
                request_version="HTTP/1.1",
                request_headers=(
                    ("Host", host),
                    ("User-Agent", flow["agent"]),
                    ("Accept", "application/json"),
                    ("Accept-Encoding", "gzip"),
                    ("Authorization", "[REDACTED]"),
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(request_body))),
                    ("X-Request-Id", f"{rng.getrandbits(128):032x}"),
                ),
                request_body=request_body,
                request_body_size=len(request_body),
                request_end_ns=ts + 40_000,
                status=status,
                reason=_REASON[status],
                response_version="HTTP/1.1",
                response_headers=(
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(response_body))),
                    ("Date", formatdate(response_ts / 1e9, usegmt=True)),
                    ("Server", "envoy"),
                    ("X-Envoy-Upstream-Service-Time", str(elapsed // 1_000_000)),
                    ("Vary", "Accept-Encoding"),
                ),
                response_body=response_body,
                response_body_size=len(response_body),
                response_ts_ns=response_ts,
                response_end_ns=response_ts + 30_000,
                src_pod=flow["src_pod"],
                src_namespace="prod",
                dst_pod=flow["dst_pod"],
                dst_namespace="prod",
                dst_service=flow["service"],
            )
        )
    return calls


def report(store: Store, reference: bytes | None = None) -> float:
    """Print bytes per call on disk, per column and per skip index; return the total."""
    client = store.client
    db = "database = currentDatabase() AND table = {t:String}"

    def table_rows(sql: str) -> list:
        return client.query(sql, parameters={"t": CALLS}).result_rows

    calls = int(client.query(f"SELECT count() FROM {CALLS}").result_rows[0][0])
    parts, compressed, raw, disk, indexes = table_rows(
        "SELECT count(), sum(data_compressed_bytes), sum(data_uncompressed_bytes),"
        f" sum(bytes_on_disk), sum(secondary_indices_compressed_bytes) FROM system.parts"
        f" WHERE active AND {db}"
    )[0]
    if not calls:
        sys.exit("no calls stored")
    print(f"{calls:,} calls in {parts} part(s)")
    print(f"  columns, compressed   {compressed / calls:8.1f} B/call   (raw {raw / calls:,.0f})")
    print(f"  skip indexes          {indexes / calls:8.1f} B/call")
    print(f"  on disk, all files    {disk / calls:8.1f} B/call   target <= {TARGET}")
    if reference is not None:
        per_call = len(reference) / calls
        print(f"  reference: the same calls as JSON lines, gzip -6: {per_call:.1f} B/call")
    print(f"\n  {'column':<20} {'B/call':>7} {'raw':>7}  type and codec")
    rows = table_rows(
        "SELECT name, type, compression_codec, data_compressed_bytes, data_uncompressed_bytes"
        f" FROM system.columns WHERE {db} ORDER BY data_compressed_bytes DESC"
    )
    for name, kind, codec, packed, unpacked in rows:
        if packed / calls >= 0.05:
            print(f"  {name:<20} {packed / calls:7.2f} {unpacked / calls:7.1f}  {kind} {codec}")
    skips = table_rows(
        "SELECT name, type_full, data_compressed_bytes FROM system.data_skipping_indices"
        f" WHERE {db} ORDER BY name"
    )
    for name, kind, packed in skips:
        print(f"  {name:<20} {packed / calls:7.2f}          index {kind}")
    return disk / calls


def reference_bytes(store: Store) -> bytes:
    lines = b"".join(
        json.dumps(view, separators=(",", ":")).encode() + b"\n" for view in read_calls(store)
    )
    return gzip.compress(lines, 6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000, help="calls per insert (the sink's)")
    ap.add_argument("--dir", help="parent of the data dir (default: a fresh temp dir)")
    ap.add_argument("--store", help="measure this existing data dir instead of synthetic calls")
    args = ap.parse_args()
    if args.store:
        with open_store(f"chdb://{Path(args.store).resolve()}", ttl_days=None) as store:
            store.client.command(f"OPTIMIZE TABLE {CALLS} FINAL")
            total = report(store, reference_bytes(store))
        return 0 if total <= TARGET else 1
    directory = Path(args.dir or tempfile.mkdtemp(prefix="bench-storage-")) / "store"
    t0 = time.perf_counter()
    calls = make_calls(args.calls)
    with open_store(f"chdb://{directory}", ttl_days=0) as store:
        writer = CallWriter(store)
        for start in range(0, len(calls), args.batch):
            writer.write(calls[start : start + args.batch])
        store.client.command(f"OPTIMIZE TABLE {CALLS} FINAL")
        print(f"wrote {len(calls):,} calls in {time.perf_counter() - t0:.1f}s ({directory})")
        total = report(store, reference_bytes(store))
    return 0 if total <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
