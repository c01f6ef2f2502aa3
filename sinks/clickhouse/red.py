"""The RED totals (ddl.py, migration 9) as rows: what the hub's /metrics turns into
Prometheus counters and a latency histogram.

    rows = read_red(store)   # one row per label set, totals since the table was made

The table holds a few rows per label set (parts not merged yet); the read sums them, so
a scrape costs one small GROUP BY whatever the number of calls stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sinks.clickhouse.ddl import LATENCY_BUCKETS_S, RED_KEYS, RED_SUMS, RED_TOTALS
from sinks.errors import SinkError, one_line

if TYPE_CHECKING:
    from sinks.clickhouse.connect import Store

_SUMS = ", ".join(f"sum({name})" for name in RED_SUMS)
_KEYS = ", ".join(RED_KEYS)
_READ = f"SELECT {_KEYS}, {_SUMS} FROM {RED_TOTALS} GROUP BY {_KEYS} ORDER BY {_KEYS}"


@dataclass(frozen=True, slots=True)
class RedRow:
    labels: tuple[str, ...]  # values of RED_KEYS, in that order
    calls: int
    errors: int
    request_bytes: int
    response_bytes: int
    answered: int  # calls with a latency (answered by the other side)
    latency_s: float  # sum over the answered calls
    buckets: tuple[int, ...]  # answered calls at most LATENCY_BUCKETS_S[k] long (cumulative)


def read_red(store: Store) -> list[RedRow]:
    try:
        rows = store.client.query(_READ).result_rows
    except Exception as ex:
        raise SinkError(f"cannot read the RED totals from {store.where}: {one_line(ex)}") from ex
    keys = len(RED_KEYS)
    out = []
    for row in rows:
        calls, errors, req, resp, answered, latency_ns, *buckets = (int(v) for v in row[keys:])
        assert len(buckets) == len(LATENCY_BUCKETS_S)
        out.append(
            RedRow(
                tuple(row[:keys]),
                calls,
                errors,
                req,
                resp,
                answered,
                latency_ns / 1e9,
                tuple(buckets),
            )  # fmt: skip
        )
    return out
