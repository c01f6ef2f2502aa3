"""Table definitions as versioned, idempotent migrations, and the retention TTL.

`calls` holds one row per API call. Design notes:

* ReplacingMergeTree deduplicates rows with equal sorting keys. A call written twice
  (Kafka redelivery, overlapping batches) has the same `call_id`, `ts`, `protocol` and
  `dst_ip`, so both copies share one key and collapse; readers use FINAL, so they see
  each call once even before a background merge has run. Duplicates are identical rows,
  so which copy survives does not matter (no version column).
* `PARTITION BY toDate(ts)`: copies of a call share `ts`, hence a partition, so FINAL
  never needs to merge across partitions (the reader tells ClickHouse so).
* Sorting key `(protocol, toStartOfHour(ts), dst_ip, ts, call_id)`: time ranges prune
  granules through the hour bucket; within an hour rows of one destination sit
  together, which serves "calls to service X" queries and compresses well. The primary
  index keeps only the first three columns (a small index in memory).
* TTL counts from `ingested_at`, not from `ts`: a TTL on `ts` makes ClickHouse drop rows
  already past it while inserting them, so replaying an old capture would store
  nothing, silently. With `ttl_only_drop_parts` whole parts are dropped, never
  rewritten; `materialize_ttl_recalculate_only` keeps a TTL change cheap.
* Headers: names lower-cased, repeated names joined with ", " (see `normalize_headers`).
* `elapsed_ns` is -1 for a call without a response; `response_ts_ns` is 0 then.

Column names are the `ApiCall` field names, with `ts` for `ts_ns`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

CALLS = "calls"
MIGRATIONS_TABLE = "schema_migrations"

_CREATE_MIGRATIONS = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    version UInt32,
    name String,
    applied_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""

_CREATE_CALLS = f"""
CREATE TABLE IF NOT EXISTS {CALLS}
(
    call_id String CODEC(ZSTD(1)),
    protocol LowCardinality(String),
    ts DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    flow_id String CODEC(ZSTD(1)),
    src_ip LowCardinality(String),
    src_port UInt16,
    dst_ip LowCardinality(String),
    dst_port UInt16,
    node LowCardinality(String),
    source LowCardinality(String),
    tls Bool,
    method LowCardinality(String),
    path String CODEC(ZSTD(1)),
    query String CODEC(ZSTD(1)),
    request_version LowCardinality(String),
    request_headers Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    request_body String CODEC(ZSTD(3)),
    request_body_size UInt64,
    request_end_ns Int64 CODEC(ZSTD(1)),
    status UInt16,
    reason LowCardinality(String),
    response_version LowCardinality(String),
    response_headers Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    response_body String CODEC(ZSTD(3)),
    response_body_size UInt64,
    response_ts_ns Int64 CODEC(ZSTD(1)),
    response_end_ns Int64 CODEC(ZSTD(1)),
    elapsed_ns Int64,
    flags Array(LowCardinality(String)),
    ingested_at DateTime DEFAULT now(),
    INDEX idx_call_id call_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_path path TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_status status TYPE minmax GRANULARITY 1,
    INDEX idx_elapsed elapsed_ns TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
PRIMARY KEY (protocol, toStartOfHour(ts), dst_ip)
ORDER BY (protocol, toStartOfHour(ts), dst_ip, ts, call_id)
SETTINGS ttl_only_drop_parts = 1, materialize_ttl_recalculate_only = 1
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _add_identity(table: str, on_cluster: str = "") -> tuple[str, ...]:
    return tuple(
        f"ALTER TABLE {table}{on_cluster} ADD COLUMN IF NOT EXISTS {side}_{what}"
        " LowCardinality(String)"
        for side in ("src", "dst")
        for what in ("pod", "namespace", "service")
    )


# Append only: never edit or renumber a migration that has shipped.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create calls", (_CREATE_CALLS,)),
    Migration(2, "kubernetes identity of both sides", _add_identity(CALLS)),
)

# On a ClickHouse cluster: each shard keeps its calls in a replicated `calls_local`, and
# `calls` is a Distributed table over them, sharded by call id, so a call written twice
# (a replay after a crash) lands on the same shard and collapses there as on one server.
CALLS_LOCAL = "calls_local"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def cluster_migrations(cluster: str) -> tuple[Migration, ...]:
    """The same migrations, ON CLUSTER, as replicated shards behind a Distributed table."""
    if not _IDENT.match(cluster):
        raise ValueError(f"bad ClickHouse cluster name {cluster!r}")
    on = f" ON CLUSTER '{cluster}'"
    local = _CREATE_CALLS.replace(
        f"IF NOT EXISTS {CALLS}\n", f"IF NOT EXISTS {CALLS_LOCAL}{on}\n"
    ).replace(
        "ENGINE = ReplacingMergeTree\n",
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/calls_local', '{replica}')\n",
    )
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {CALLS}{on} AS {CALLS_LOCAL}"
        f" ENGINE = Distributed('{cluster}', currentDatabase(), {CALLS_LOCAL}, cityHash64(call_id))"
    )
    return (
        Migration(1, "create calls", (local, distributed)),
        Migration(
            2,
            "kubernetes identity of both sides",
            _add_identity(CALLS_LOCAL, on) + _add_identity(CALLS, on),
        ),
    )


def applied_versions(client: Client) -> set[int]:
    rows = client.query(f"SELECT version FROM {MIGRATIONS_TABLE} FINAL").result_rows
    return {int(row[0]) for row in rows}


def migrate(client: Client, cluster: str = "") -> list[int]:
    """Apply the migrations this database lacks, in order; return their versions.

    Each statement is idempotent (IF NOT EXISTS), and the version rows collapse by
    version, so two processes migrating at once end in the same state.
    """
    client.command(_CREATE_MIGRATIONS)
    done = applied_versions(client)
    applied = []
    for migration in cluster_migrations(cluster) if cluster else MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        applied.append(migration.version)
    return applied


_TTL = re.compile(r"\bTTL\s+ingested_at\s*\+\s*toIntervalDay\((\d+)\)")


def current_ttl_days(client: Client, cluster: str = "") -> int:
    """The TTL on `calls` (on a cluster: its shards' `calls_local`) in days, 0 for none."""
    engine = client.query(
        "SELECT engine_full FROM system.tables"
        " WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": CALLS_LOCAL if cluster else CALLS},
    ).result_rows
    if not engine:
        raise LookupError(f"table {CALLS} does not exist")
    match = _TTL.search(engine[0][0])
    return int(match.group(1)) if match else 0


def apply_ttl(client: Client, ttl_days: int, cluster: str = "") -> bool:
    """Make the TTL on `calls` `ttl_days` (0: none); True if it had to change."""
    if current_ttl_days(client, cluster) == ttl_days:
        return False
    for statement in ttl_statements(ttl_days, cluster):
        client.command(statement)
    return True


def ttl_statements(ttl_days: int, cluster: str = "") -> list[str]:
    table = f"{CALLS_LOCAL} ON CLUSTER '{cluster}'" if cluster else CALLS
    if ttl_days:
        return [f"ALTER TABLE {table} MODIFY TTL ingested_at + INTERVAL {int(ttl_days)} DAY"]
    return [f"ALTER TABLE {table} REMOVE TTL"]
