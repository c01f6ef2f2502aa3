"""Where the writer's CPU per call goes, by subtraction, on embedded chDB: the sink's
INSERT ... SELECT of CallBatch messages (sinks/clickhouse/encoded.py) taken apart.

    python bench/bench_sink_parts.py [--calls N] [--reps R]

N calls (bench_sink.py's typical small HTTP calls) are framed as the sink frames them
(one Avro container, a sentinel per message) and each step below is run R times in the
same process, alternating, reporting the median CPU (this process's, chDB's threads
included): reading the file (all columns; without the header arrays), the same rows in
the formats chDB reads natively (what a columnar CallBatch would cost to read), the
SELECT's expressions, the sentinel WHERE, the same-as-decoded checks, the insert into a
Null table and into `calls` (the part write), and the views. Then the fixed cost of one
insert of 50 calls with and without the views. Run it on a quiet machine or read ratios.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sink import make_calls, messages  # noqa: E402
from schemas.serde import call_batch_records  # noqa: E402
from sinks.clickhouse import encoded, open_store  # noqa: E402

_FORMATS = ("Native", "ArrowStream", "RowBinaryWithNamesAndTypes", "Parquet")


def container(calls: int, path: str) -> str:
    """Write `calls` calls as the sink would; returns its INSERT."""
    msgs = messages(make_calls(calls, time.time_ns() - 3_600_000_000_000), 50)
    with open(path, "wb") as out:
        sentinels = encoded._write_container(out, [(m, *call_batch_records(m)) for m in msgs])
    return encoded._insert_sql(path, sentinels)


def steps(sql: str, path: str, tmp: str) -> dict[str, str]:
    """Each step as one statement; the differences between them are the parts."""
    avro = f"file('{path}', 'Avro')"
    one = " SETTINGS max_threads = 1"
    where = re.search(r"\nWHERE .*?\n(?=SETTINGS)", sql, re.S).group(0)
    checks = f"\n  AND throwIf(NOT ({encoded._SAME_AS_DECODED}), 'a call to decode first') = 0"
    null = sql.replace("INSERT INTO calls ", "INSERT INTO bench_null ")
    out = {
        "read Avro, every column": f"SELECT * FROM {avro} FORMAT Null{one}",
        "read Avro, no header arrays": (
            f"SELECT * EXCEPT (request_headers, response_headers) FROM {avro} FORMAT Null{one}"
        ),
    }
    for fmt in _FORMATS:
        rows = f"file('{tmp}/rows.{fmt}', '{fmt}')"
        out[f"read {fmt[:11]} (same rows)"] = f"SELECT * FROM {rows} FORMAT Null{one}"
    out["+ SELECT expressions (into Null)"] = null.replace(where, "\n")
    out["+ sentinel WHERE"] = null.replace(checks, "")
    out["+ same-as-decoded checks"] = null
    out["+ part write (a table like calls)"] = sql.replace(
        "INSERT INTO calls ", "INSERT INTO bench_calls "
    )
    out["+ the two views (into calls)"] = sql
    return out


def timed(client, statements: dict[str, str], reps: int) -> dict[str, float]:  # noqa: ANN001
    cpu: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(reps):
        for name, statement in statements.items():
            started = time.process_time()
            client.command(statement)
            cpu[name].append(time.process_time() - started)
    return {name: statistics.median(times) for name, times in cpu.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=25_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, open_store(f"chdb://{tmp}/store") as store:
        client, path = store.client, f"{tmp}/calls.avro"
        sql = container(args.calls, path)
        client.command("CREATE TABLE bench_null AS calls ENGINE = Null")
        for fmt in _FORMATS:
            client.command(
                f"INSERT INTO FUNCTION file('{tmp}/rows.{fmt}', '{fmt}')"
                f" SELECT * FROM file('{path}', 'Avro')"
            )
        client.command("CREATE TABLE bench_calls AS calls")  # the table, not its views
        parts = timed(client, steps(sql, path, tmp), args.reps)
        print(f"{args.calls} calls per insert, median of {args.reps}, CPU us per call")
        for name, cpu in parts.items():
            print(f"  {name:36}{cpu / args.calls * 1e6:>8.2f}")
        small = container(50, f"{tmp}/small.avro")
        fixed = timed(
            client,
            {
                "none": small.replace("INSERT INTO calls ", "INSERT INTO bench_calls "),
                "views": small,
            },
            args.reps * 3,
        )
        print(f"one insert of 50 calls: {fixed['none'] * 1e3:.1f} ms CPU without the views,"
              f" {fixed['views'] * 1e3:.1f} ms with them")  # fmt: skip


if __name__ == "__main__":
    main()
