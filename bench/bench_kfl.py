"""KFL latency on embedded chDB, and Python predicate throughput.

    python bench/bench_kfl.py [--calls N] [--runs R] [--dir DIR]

Fills a fresh chDB data dir with N (default 1,000,000) synthetic HTTP/gRPC/DNS calls
over one day, made inside ClickHouse (`INSERT INTO calls SELECT ... FROM numbers(N)`),
then for each typical filter prints p50/p99 latency over R runs of
  * count: `SELECT count() FROM calls FINAL WHERE <kfl sql>` (the whole match set), and
  * page:  `read_calls(..., limit=100)` (what `wiretide query FILTER --limit 100` does),
plus the CPU this process spent per count (chDB runs in-process, so that is the query's
work on every core; wall time on a shared machine is mostly waiting), the rows ClickHouse
plans to read after pruning (EXPLAIN ESTIMATE) and what pruned them: the primary key,
partitions and each skip index with the granules it kept (EXPLAIN indexes = 1). Each
filter is either common (protocol, status, path, time, namespace, ips: target p99 50 ms)
or a header/body filter (target 500 ms), issue 14's targets at 10M calls. Then it
evaluates the Python predicates of the same filters over 100,000 stored calls (as
`call_view` dicts) and prints evaluations per second.

The query condition cache is off for the counts: it would answer the 2nd..Rth run of a
filter from the 1st, and p99 would be a cache hit.
"""

from __future__ import annotations

import argparse
import calendar
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sinks.clickhouse import count_calls, open_store, read_calls  # noqa: E402
from sinks.clickhouse.reader import FINAL_SETTINGS  # noqa: E402
from wiretide.kfl import parse, to_predicate, to_sql  # noqa: E402

BASE = calendar.timegm((2026, 5, 1, 0, 0, 0, 0, 0, 0)) * 10**9
DAY = 86_400 * 10**9

# One row per number; all values derived from `number` so the data is reproducible.
_FILL = """
INSERT INTO calls (call_id, protocol, ts, flow_id, src_ip, src_port, dst_ip, dst_port, node,
    source, tls, method, path, query, request_version, request_headers, request_body,
    request_body_size, request_end_ns, status, reason, response_version, response_headers,
    response_body, response_body_size, response_ts_ns, response_end_ns, elapsed_ns, flags,
    src_pod, src_namespace, dst_namespace, dst_service)
SELECT
    lower(hex(number)) AS call_id,
    multiIf(number % 50 = 0, 'grpc', number % 50 = 1, 'dns', 'http') AS protocol,
    fromUnixTimestamp64Nano(toInt64({base:Int64} + number * {step:Int64}), 'UTC') AS ts,
    concat('tcp:', src_ip, ':', toString(src_port), '-', dst_ip, ':8080') AS flow_id,
    concat('10.1.', toString(number % 7), '.', toString(number % 50)) AS src_ip,
    toUInt16(30000 + number % 30000) AS src_port,
    concat('10.2.0.', toString(number % 20)) AS dst_ip,
    toUInt16(8080) AS dst_port,
    concat('node-', toString(number % 3)) AS node,
    'afpacket' AS source,
    number % 10 = 0 AS tls,
    ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'][number % 6 + 1] AS method,
    concat(['/api/v1/users', '/api/v1/orders', '/healthz', '/api/v1/catalogue', '/metrics',
            '/api/v2/search', '/login', '/api/v1/cart'][number % 8 + 1],
           if(number % 3 = 0, concat('/', toString(number % 1000)), '')) AS path,
    concat('page=', toString(number % 10)) AS query,
    'HTTP/1.1' AS request_version,
    map('host', concat('svc-', toString(number % 20), '.prod.svc.cluster.local'),
        'user-agent', 'Go-http-client/1.1', 'accept', 'application/json',
        'x-request-id', lower(hex(number * 2654435761))) AS request_headers,
    if(method IN ('POST', 'PUT'),
       concat('{"id":', toString(number), ',"name":"item-', toString(number % 977), '"}'),
       '') AS request_body,
    length(request_body) AS request_body_size,
    toInt64({base:Int64} + number * {step:Int64}) + 50000 AS request_end_ns,
    toUInt16(if(number % 100 = 99, 0, [200, 200, 200, 200, 200, 201, 204, 404, 500, 503,
             200, 200, 301, 200, 400, 200, 200, 200, 200, 502][number % 20 + 1])) AS status,
    if(status = 0, '', 'OK') AS reason,
    if(status = 0, '', 'HTTP/1.1') AS response_version,
    if(status = 0, map(), map('content-type', 'application/json', 'server', 'envoy'))
        AS response_headers,
    if(status >= 500, '{"error":"upstream failed"}',
       if(status = 0, '', concat('{"ok":true,"n":', toString(number % 12345), '}')))
        AS response_body,
    length(response_body) AS response_body_size,
    if(status = 0, 0, toInt64({base:Int64} + number * {step:Int64})
                      + 200000 + (number * 7919) % 300000000) AS response_ts_ns,
    if(status = 0, 0, response_ts_ns + 100000) AS response_end_ns,
    if(status = 0, -1, response_ts_ns
       - toInt64({base:Int64} + number * {step:Int64})) AS elapsed_ns,
    if(status = 0, ['no_response'], []) AS flags,
    concat('front-7d9c4b8f6d-', toString(number % 7)) AS src_pod,
    'web' AS src_namespace,
    ['shop', 'shop', 'payments', 'identity', 'search'][number % 20 % 5 + 1] AS dst_namespace,
    concat('svc-', toString(number % 20)) AS dst_service
FROM numbers({n:UInt64})
"""


def filters(n: int) -> list[tuple[str, str]]:
    end = BASE + DAY
    probe = 123_457 % n
    request_id = format(probe * 2654435761, "x")
    request_id = "0" * (len(request_id) % 2) + request_id  # ClickHouse hex() keeps whole bytes
    hour = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime((BASE + DAY // 2) // 10**9))
    hour_end = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime((BASE + DAY // 2) // 10**9 + 3600))
    del end
    return [
        ("protocol", "grpc"),
        ("status", "response.status == 503"),
        ("path prefix", 'request.path.startsWith("/api/v1/orders")'),
        ("namespace", 'namespace == "payments"'),
        ("namespace & 5xx", 'dst.namespace == "identity" and response.status >= 500'),
        (
            "status and path",
            'http and response.status >= 500 and request.path.startsWith("/api/v1/orders")',
        ),
        ("status (KFL2)", 'http && status_code == 404 && method == "DELETE"'),
        ("src/dst ip", 'src.ip == "10.1.3.17" and dst.ip == "10.2.0.17"'),
        ("dst ip and port", 'dst.ip == "10.2.0.5" and dst.port == 8080'),
        ("last 5 minutes", 'timestamp > now() - duration("5m")'),
        ("one hour window", f'timestamp >= "{hour}" and timestamp < "{hour_end}"'),
        ("header value", f'request.headers["X-Request-Id"] == "{request_id}"'),
        ("header any value", 'request.headers.*.contains("svc-7.")'),
        ("slow calls (KFL1)", "http and elapsedTime > 250"),
        ("no response", "response == nil"),
        ("regex on path", 'request.path == r"^/api/v[12]/(users|cart)/\\d+$"'),
        ("body text", 'response.body.contains("upstream")'),
    ]


# Filters on headers or bodies (target p99 500 ms); every other one is common (50 ms).
HEAVY = {"header value", "header any value", "body text"}


def pruning(store, where: str, params: dict) -> str:
    """What narrowed the read: each index of EXPLAIN indexes = 1 that kept fewer granules
    than it was given, as `name kept/given`."""
    plan = store.client.query(
        f"EXPLAIN indexes = 1 SELECT count() FROM calls FINAL WHERE {where}",
        parameters=params,
        settings=FINAL_SETTINGS,
    ).result_rows
    steps, name = [], ""
    for (line,) in plan:
        text = line.strip()
        if text in ("Min-Max", "Partition", "PrimaryKey"):
            name = {"Min-Max": "minmax", "Partition": "partition", "PrimaryKey": "key"}[text]
        elif text.startswith("Name: "):
            name = text.removeprefix("Name: ")
        elif text.startswith("Granules: ") and name:
            kept, given = text.removeprefix("Granules: ").split("/")
            if int(kept) < int(given):
                steps.append(f"{name} {kept}/{given}")
            name = ""
    return ", ".join(steps) or "nothing"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--dir", help="data dir (default: a fresh temp dir)")
    args = ap.parse_args()
    directory = Path(args.dir or tempfile.mkdtemp(prefix="bench-kfl-")) / "store"
    store = open_store(f"chdb://{directory}", ttl_days=0)
    n = args.calls
    t0 = time.perf_counter()
    store.client.command(
        _FILL,
        parameters={"base": BASE, "step": DAY // n, "n": n},
        settings={"max_insert_threads": 4},
    )
    store.client.command("OPTIMIZE TABLE calls FINAL")
    stored = count_calls(store)
    print(f"stored {stored:,} calls in {time.perf_counter() - t0:.1f}s ({directory})")
    now_ns = BASE + DAY  # "now" is the end of the data's day
    shape = store.client.query("SHOW CREATE TABLE calls").result_rows[0][0]
    print("sorting key, partitions and skip indexes of `calls`:")
    for line in shape.splitlines():
        if line.strip().startswith(("INDEX", "PARTITION BY", "PRIMARY KEY", "ORDER BY")):
            print("   ", line.strip().rstrip(","))

    print(
        f"\n{'filter':<18} {'matches':>9}  {'count p50':>9} {'p99':>7} {'cpu':>7}  "
        f"{'page p50':>9} {'p99':>7}  {'rows to read':>12}  target  pruned by / kfl"
    )
    for label, text in filters(n):
        query = parse(text)
        where, params = to_sql(query, now_ns=now_ns)
        sql = f"SELECT count() FROM calls FINAL WHERE {where}"
        settings = {**FINAL_SETTINGS, "use_query_condition_cache": 0}
        counts, pages, cpu = [], [], []
        matches = 0
        estimate = store.client.query(
            f"EXPLAIN ESTIMATE SELECT count() FROM calls WHERE {where}", parameters=params
        ).named_results()
        read = sum(int(row["rows"]) for row in estimate)
        for _ in range(args.runs):
            t, c = time.perf_counter(), time.process_time()
            result = store.client.query(sql, parameters=params, settings=settings)
            counts.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            matches = result.result_rows[0][0]
            t = time.perf_counter()
            read_calls(store, where_sql=where, params=params, limit=100)
            pages.append(time.perf_counter() - t)
        c50, c99 = percentiles(counts)
        p50, p99 = percentiles(pages)
        target = 500 if label in HEAVY else 50
        print(
            f"{label:<18} {matches:>9,}  {c50 * 1e3:>7.1f}ms {c99 * 1e3:>5.1f}ms "
            f"{statistics.median(cpu) * 1e3:>5.1f}ms  {p50 * 1e3:>7.1f}ms {p99 * 1e3:>5.1f}ms  "
            f"{read:>12,}  {target:>4}ms  {pruning(store, where, params)}\n{'':>20}{text}"
        )

    sample = read_calls(store, limit=100_000)
    print(f"\nPython predicate over {len(sample):,} stored calls (call_view dicts):")
    for label, text in filters(n):
        keep = to_predicate(parse(text), now_ns=now_ns)
        t = time.perf_counter()
        hits = sum(1 for view in sample if keep(view))
        elapsed = time.perf_counter() - t
        print(f"  {label:<18} {len(sample) / elapsed:>12,.0f} evals/s   ({hits:,} match)")
    t = time.perf_counter()
    rounds = 2000
    for _ in range(rounds):
        for _, text in filters(n):
            parse(text)
    per = (time.perf_counter() - t) / (rounds * len(filters(n)))
    print(f"\nparse + check: {per * 1e6:.0f} µs per filter")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
