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
* `status` is Int32 (migration 5; it was UInt16): the Avro field's range, so a status a
  protocol reports as negative (Kafka's -1 UNKNOWN_SERVER_ERROR) is stored as it is.
* `verdicts` (migration 4): rule name → "pass" or "fail: ..." for each validation rule
  that applied to the call (streams/rules); empty without rules.
* Codecs (migration 6, measured with bench/bench_storage.py): ZSTD(1) alone leaves 8-byte
  times at ~5 B a call, Delta first (rows sort by time) ~3.6 B; T64 packs the small
  numbers (sizes, status, latency) to their used bits; response headers repeat across
  calls in windows ZSTD(1)'s matcher misses, ZSTD(3) takes them from ~5.5 to ~2 B;
  LowCardinality columns outside the key get ZSTD(1) over their index numbers.
  Changing a codec rewrites nothing: parts take it as they are written or merged.
* Skip indexes (migration 7): a bloom filter over the request headers' values, so
  `request.headers["x-request-id"] == "..."` reads the few granules holding that value.
* Migration 8: `path` is LowCardinality, so a path filter (prefix, regex, equality) runs
  once per distinct path of a part instead of once per call (bench/bench_kfl.py: ~7x less
  CPU); paths with ids in them overflow the part's dictionary and cost about what a
  String does, in time and bytes. A set index on `dst_namespace`: the namespace follows
  `dst_ip`, which the sorting key groups, so most granules hold one or two namespaces.

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


# --- Service map (migration 3) -------------------------------------------------------
# Edges per minute between workloads, kept up to date by a materialized view on `calls`.
# A workload is what a map node shows: the pod's owner-ish name (a Deployment's
# `front-7d9c4b-x2x9q` → `front`, a StatefulSet's `db-0` → `db`, a DaemonSet's or Job's
# `agent-x2x9q` → `agent`), else the service name, else the IP. The hash suffixes use
# Kubernetes' safe alphabet (no vowels, no 0/1/3), so names like `redis` keep their tail.
#
# The view counts inserts, not distinct calls: `calls` collapses a call written twice
# only when it is read with FINAL, but the view has already added both copies. A batch
# the sink replays (a writer that crashed after inserting but before committing its
# Kafka offsets, a retry after a failed insert) is written without the calls already
# stored (writer.py, invariant 5; sinks/clickhouse/in_flight.py), so it is counted once.
# What still over-counts: a call that reaches the calls topic twice (an agent restarted
# over a pcap sends it again: bench/chaos.py's producer faults, thousands of calls; a
# capture stored twice), a writer that kept inserting after its partitions moved (a
# zombie), an in-flight marker Kafka did not take. `read_map(exact=True)` and
# every filtered map aggregate `calls FINAL` instead (see service_map.py for the cost).
SERVICE_MAP = "service_map"
SERVICE_MAP_VIEW = "service_map_mv"
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
# Shortest name followed by one owner suffix: ReplicaSet hash + pod id, ordinal, pod id.
POD_OWNER_PATTERN = rf"^(.+?)(?:-{_SAFE}{{6,10}}-{_SAFE}{{5}}|-[0-9]+|-{_SAFE}{{5}})$"
KIND_CODES = {0: "ip", 1: "service", 2: "pod"}  # max() over a node keeps the best known
# Calls that expect no answer: a missing response is not an error for them.
_ONE_WAY = (
    "(hasAny(flags, ['oneway', 'more_to_come', 'push'])"
    " OR (protocol = 'websocket' AND method IN ('text', 'binary', 'pong'))"
    " OR (protocol = 'kafka' AND method = 'Produce' AND request_headers['acks'] = '0'))"
)
# What counts as a failed call, from what `status` means per protocol
# (streams/dissect/README.md): HTTP-like protocols fail with 5xx (GraphQL also with
# `errors` in a 200); a WebSocket close fails unless normal (1000, 1001, none = 1005);
# DNS fails on rcodes other than NOERROR and NXDOMAIN (search-path lookups in a cluster
# are mostly NXDOMAIN); every other protocol fails on a non-zero result code.
ERROR_SQL = (
    f"multiIf(has(flags, 'no_response'), NOT {_ONE_WAY},"
    " protocol IN ('http', 'http2', 'gql'), status >= 500 OR has(flags, 'graphql_error'),"
    " protocol = 'websocket', status NOT IN (0, 1000, 1001, 1005),"
    " protocol = 'dns', status NOT IN (0, 3),"
    " status != 0)"
)
# Latency of calls answered by the other side (a push's "response" is the push itself).
ANSWERED_SQL = "response_ts_ns != 0 AND NOT has(flags, 'push')"
QUANTILES = (0.5, 0.95, 0.99)
_Q = ", ".join(map(str, QUANTILES))


def workload_sql(side: str) -> str:
    pod, svc, ip = f"{side}_pod", f"{side}_service", f"{side}_ip"
    return (
        f"multiIf({pod} != '', replaceRegexpOne({pod}, '{POD_OWNER_PATTERN}', '\\\\1'),"
        f" {svc} != '', {svc}, {ip})"
    )


def kind_sql(side: str) -> str:
    return f"multiIf({side}_pod != '', 2, {side}_service != '', 1, 0)"


# The map's key columns and aggregates as a SELECT over `calls`: the view, its backfill
# and the exact reader (service_map.py) all use it, so they agree by construction.
EDGE_KEYS = ("minute", "src_namespace", "src", "dst_namespace", "dst", "protocol")
EDGE_SELECT = f"""toStartOfMinute(ts) AS minute,
    src_namespace,
    {workload_sql("src")} AS src,
    dst_namespace,
    {workload_sql("dst")} AS dst,
    protocol,
    max(toUInt8({kind_sql("src")})) AS src_kind,
    max(toUInt8({kind_sql("dst")})) AS dst_kind,
    count() AS calls,
    countIf({ERROR_SQL}) AS errors,
    sum(request_body_size + response_body_size) AS bytes,
    quantilesStateIf({_Q})(elapsed_ns, {ANSWERED_SQL}) AS latency"""
_EDGE_GROUP = ", ".join(EDGE_KEYS)

_CREATE_SERVICE_MAP = f"""
CREATE TABLE IF NOT EXISTS {SERVICE_MAP}
(
    minute DateTime('UTC'),
    src_namespace LowCardinality(String),
    src LowCardinality(String),
    dst_namespace LowCardinality(String),
    dst LowCardinality(String),
    protocol LowCardinality(String),
    src_kind SimpleAggregateFunction(max, UInt8),
    dst_kind SimpleAggregateFunction(max, UInt8),
    calls SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    bytes SimpleAggregateFunction(sum, UInt64),
    latency AggregateFunction(quantiles({_Q}), Int64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY ({_EDGE_GROUP})
"""


def _edges_from(table: str) -> str:
    return f"SELECT {EDGE_SELECT}\nFROM {table}"


# Calls stored before this migration: aggregated once, from the deduplicated table, and
# only into an empty map (a migration retried after a crash does not add them again).
# Then the view, so calls inserted from now on are counted as they arrive.
_BACKFILL_SERVICE_MAP = (
    f"INSERT INTO {SERVICE_MAP} {_edges_from(CALLS + ' FINAL')}"
    f"\nWHERE (SELECT count() FROM {SERVICE_MAP}) = 0\nGROUP BY {_EDGE_GROUP}"
    "\nSETTINGS do_not_merge_across_partitions_select_final = 1"
)
_CREATE_SERVICE_MAP_VIEW = (
    f"CREATE MATERIALIZED VIEW IF NOT EXISTS {SERVICE_MAP_VIEW} TO {SERVICE_MAP} AS\n"
    f"{_edges_from(CALLS)}\nGROUP BY {_EDGE_GROUP}"
)
SERVICE_MAP_LOCAL = "service_map_local"


def _service_map_on_cluster(cluster: str, on: str) -> tuple[str, ...]:
    """Each shard aggregates the calls it stores (the view hangs on `calls_local`, where
    the Distributed table's inserts land); `service_map` reads every shard. Calls stored
    before the migration are not backfilled on a cluster (INSERT has no ON CLUSTER)."""
    local = _CREATE_SERVICE_MAP.replace(
        f"IF NOT EXISTS {SERVICE_MAP}\n", f"IF NOT EXISTS {SERVICE_MAP_LOCAL}{on}\n"
    ).replace(
        "ENGINE = AggregatingMergeTree\n",
        "ENGINE = ReplicatedAggregatingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/service_map_local', '{replica}')\n",
    )
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {SERVICE_MAP}{on} AS {SERVICE_MAP_LOCAL}"
        f" ENGINE = Distributed('{cluster}', currentDatabase(), {SERVICE_MAP_LOCAL}, rand())"
    )
    view = (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {SERVICE_MAP_VIEW}{on} TO {SERVICE_MAP_LOCAL}"
        f" AS\n{_edges_from(CALLS_LOCAL)}\nGROUP BY {_EDGE_GROUP}"
    )
    return (local, distributed, view)


def _add_verdicts(table: str, on_cluster: str = "") -> tuple[str, ...]:
    return (
        f"ALTER TABLE {table}{on_cluster} ADD COLUMN IF NOT EXISTS verdicts"
        " Map(LowCardinality(String), String) CODEC(ZSTD(1))",
    )


def _signed_status(table: str, on_cluster: str = "") -> tuple[str, ...]:
    return (f"ALTER TABLE {table}{on_cluster} MODIFY COLUMN status Int32",)


# Migration 6: codecs for the columns that cost the most per small call (module notes).
_CODECS: tuple[tuple[str, str], ...] = (
    ("request_end_ns", "Int64 CODEC(Delta, ZSTD(1))"),
    ("response_ts_ns", "Int64 CODEC(Delta, ZSTD(1))"),
    ("response_end_ns", "Int64 CODEC(Delta, ZSTD(1))"),
    ("elapsed_ns", "Int64 CODEC(T64, ZSTD(1))"),
    ("request_body_size", "UInt64 CODEC(T64, ZSTD(1))"),
    ("response_body_size", "UInt64 CODEC(T64, ZSTD(1))"),
    ("status", "Int32 CODEC(T64, ZSTD(1))"),
    ("src_port", "UInt16 CODEC(ZSTD(1))"),
    ("dst_port", "UInt16 CODEC(ZSTD(1))"),
    ("response_headers", "Map(LowCardinality(String), String) CODEC(ZSTD(3))"),
    ("ingested_at", "DateTime DEFAULT now() CODEC(Delta, ZSTD(1))"),
    *(
        (name, "LowCardinality(String) CODEC(ZSTD(1))")  # its index column: ~1 → ~0.6 B
        for name in (
            "src_ip",
            "node",
            "method",
            "reason",
            *(
                f"{side}_{what}"
                for side in ("src", "dst")
                for what in ("pod", "namespace", "service")
            ),
        )
    ),
)


def _smaller_columns(table: str, on_cluster: str = "") -> tuple[str, ...]:
    changes = ", ".join(f"MODIFY COLUMN {name} {kind}" for name, kind in _CODECS)
    return (f"ALTER TABLE {table}{on_cluster} {changes}",)


# Migration 7. MATERIALIZE builds the index for parts written before it, in the
# background (a mutation); until it is done those parts are read without it.
HEADER_INDEX = "idx_request_header_values"


def _header_index(table: str, on_cluster: str = "") -> tuple[str, ...]:
    return (
        f"ALTER TABLE {table}{on_cluster} ADD INDEX IF NOT EXISTS {HEADER_INDEX}"
        " mapValues(request_headers) TYPE bloom_filter(0.01) GRANULARITY 1",
        f"ALTER TABLE {table}{on_cluster} MATERIALIZE INDEX {HEADER_INDEX}",
    )


# Migration 8. The type change rewrites `path` of the existing parts in the background
# (a mutation); reads meanwhile see old and new parts alike.
NAMESPACE_INDEX = "idx_dst_namespace"


def _paths_and_namespaces(table: str, on_cluster: str = "") -> tuple[str, ...]:
    return (
        f"ALTER TABLE {table}{on_cluster} MODIFY COLUMN path LowCardinality(String) CODEC(ZSTD(1))",
        f"ALTER TABLE {table}{on_cluster} ADD INDEX IF NOT EXISTS {NAMESPACE_INDEX}"
        " dst_namespace TYPE set(100) GRANULARITY 1",
        f"ALTER TABLE {table}{on_cluster} MATERIALIZE INDEX {NAMESPACE_INDEX}",
    )


# --- RED totals (migration 9) ---------------------------------------------------------
# Totals since the table was made, per (source workload, destination workload, their
# namespaces, protocol, method, status class): calls, errors, body bytes and a latency
# histogram, what the hub's /metrics serves as Prometheus counters (wiretide/hub/metrics.py).
# No time column and no TTL, so the totals only grow (a counter never goes back when
# calls expire). Label values are bounded: a workload (never a pod, never an IP: outside
# the cluster it is "unknown"), methods of the HTTP family from the standard set, other
# protocols' method names only as short identifiers (their own command vocabulary), else
# "other". Like the map, the view counts inserts: a batch the sink replays after a crash
# is written without the calls already stored, so it is counted once (see the service
# map's notes for what still over-counts).
RED_TOTALS = "red_totals"
RED_TOTALS_VIEW = "red_totals_mv"
RED_TOTALS_LOCAL = "red_totals_local"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE")
_HTTP_FAMILY = "('http', 'http2', 'gql', 'grpc')"
RED_KEYS = ("src_namespace", "src_workload", "dst_namespace", "dst_workload", "protocol",
            "method", "status_class")  # fmt: skip
RED_SUMS = ("calls", "errors", "request_bytes", "response_bytes", "answered", "latency_ns",
            *(f"le_{k}" for k in range(len(LATENCY_BUCKETS_S))))  # fmt: skip


def _red_workload(side: str) -> str:
    pod, svc = f"{side}_pod", f"{side}_service"
    return (
        f"multiIf({pod} != '', replaceRegexpOne({pod}, '{POD_OWNER_PATTERN}', '\\\\1'),"
        f" {svc} != '', {svc}, 'unknown')"
    )


_METHODS = ", ".join(f"'{m}'" for m in HTTP_METHODS)
_RED_METHOD = (
    f"multiIf(protocol IN {_HTTP_FAMILY}, if(method IN ({_METHODS}), method, 'other'),"
    " match(method, '^[A-Za-z][A-Za-z0-9_.-]{0,31}$'), method, 'other')"
)
# HTTP family: 1xx..5xx from the status; no answer: "none"; others: "error" by ERROR_SQL.
_STATUS_CLASS = (
    "multiIf(has(flags, 'no_response'), 'none',"
    " protocol IN ('http', 'http2', 'gql') AND status BETWEEN 100 AND 599,"
    " concat(toString(intDiv(status, 100)), 'xx'),"
    f" {ERROR_SQL}, 'error', 'ok')"
)
RED_SELECT = ",\n    ".join(
    (
        "src_namespace",
        f"{_red_workload('src')} AS src_workload",
        "dst_namespace",
        f"{_red_workload('dst')} AS dst_workload",
        "protocol",
        f"{_RED_METHOD} AS method",
        f"{_STATUS_CLASS} AS status_class",
        "count() AS calls",
        f"countIf({ERROR_SQL}) AS errors",
        "sum(request_body_size) AS request_bytes",
        "sum(response_body_size) AS response_bytes",
        f"countIf({ANSWERED_SQL}) AS answered",
        f"sumIf(toUInt64(greatest(elapsed_ns, 0)), {ANSWERED_SQL}) AS latency_ns",
        *(
            f"countIf({ANSWERED_SQL} AND elapsed_ns <= {round(bound * 1e9)}) AS le_{k}"
            for k, bound in enumerate(LATENCY_BUCKETS_S)
        ),
    )
)
_RED_COLUMNS = ",\n    ".join(
    [f"{key} LowCardinality(String)" for key in RED_KEYS]
    + [f"{name} SimpleAggregateFunction(sum, UInt64)" for name in RED_SUMS]
)
_CREATE_RED = f"""
CREATE TABLE IF NOT EXISTS {RED_TOTALS}
(
    {_RED_COLUMNS}
)
ENGINE = AggregatingMergeTree
ORDER BY ({", ".join(RED_KEYS)})
"""


def _red_view(source: str, target: str, on: str = "") -> str:
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {RED_TOTALS_VIEW}{on} TO {target} AS\n"
        f"SELECT {RED_SELECT}\nFROM {source}\nGROUP BY {', '.join(RED_KEYS)}"
    )


def _red_totals_on_cluster(cluster: str, on: str) -> tuple[str, ...]:
    """As the service map: each shard counts what it stores, `red_totals` reads them all."""
    local = _CREATE_RED.replace(
        f"IF NOT EXISTS {RED_TOTALS}\n", f"IF NOT EXISTS {RED_TOTALS_LOCAL}{on}\n"
    ).replace(
        "ENGINE = AggregatingMergeTree\n",
        "ENGINE = ReplicatedAggregatingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/red_totals_local', '{replica}')\n",
    )
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {RED_TOTALS}{on} AS {RED_TOTALS_LOCAL}"
        f" ENGINE = Distributed('{cluster}', currentDatabase(), {RED_TOTALS_LOCAL}, rand())"
    )
    return (local, distributed, _red_view(CALLS_LOCAL, RED_TOTALS_LOCAL, on))


# Append only: never edit or renumber a migration that has shipped.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create calls", (_CREATE_CALLS,)),
    Migration(2, "kubernetes identity of both sides", _add_identity(CALLS)),
    Migration(
        3,
        "service map: edges per minute",
        (_CREATE_SERVICE_MAP, _BACKFILL_SERVICE_MAP, _CREATE_SERVICE_MAP_VIEW),
    ),
    Migration(4, "validation rule verdicts", _add_verdicts(CALLS)),
    Migration(5, "signed status (Kafka error -1)", _signed_status(CALLS)),
    Migration(6, "codecs for small calls", _smaller_columns(CALLS)),
    Migration(7, "index of request header values", _header_index(CALLS)),
    Migration(8, "paths by dictionary, namespace index", _paths_and_namespaces(CALLS)),
    # Counted from the view's creation on: calls stored before it are not in the totals.
    Migration(9, "RED totals for /metrics", (_CREATE_RED, _red_view(CALLS, RED_TOTALS))),
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
        Migration(3, "service map: edges per minute", _service_map_on_cluster(cluster, on)),
        Migration(
            4, "validation rule verdicts", _add_verdicts(CALLS_LOCAL, on) + _add_verdicts(CALLS, on)
        ),
        Migration(
            5,
            "signed status (Kafka error -1)",
            _signed_status(CALLS_LOCAL, on) + _signed_status(CALLS, on),
        ),
        # Codecs and indexes belong to the shards' storage; the Distributed table has none.
        Migration(6, "codecs for small calls", _smaller_columns(CALLS_LOCAL, on)),
        Migration(7, "index of request header values", _header_index(CALLS_LOCAL, on)),
        Migration(
            8,
            "paths by dictionary, namespace index",
            # the type is the Distributed table's too; the index is the shards' alone
            _paths_and_namespaces(CALLS_LOCAL, on) + _paths_and_namespaces(CALLS, on)[:1],
        ),
        Migration(9, "RED totals for /metrics", _red_totals_on_cluster(cluster, on)),
    )


def applied_versions(client: Client) -> set[int]:
    rows = client.query(f"SELECT version FROM {MIGRATIONS_TABLE} FINAL").result_rows
    return {int(row[0]) for row in rows}


def migrate(client: Client, cluster: str = "", upto: int | None = None) -> list[int]:
    """Apply the migrations this database lacks, in order (those up to version `upto`,
    if given: a store as an older release left it); return their versions.

    Each statement is idempotent (IF NOT EXISTS), and the version rows collapse by
    version, so two processes migrating at once end in the same state.
    """
    client.command(_CREATE_MIGRATIONS)
    done = applied_versions(client)
    applied = []
    for migration in cluster_migrations(cluster) if cluster else MIGRATIONS:
        if migration.version in done or (upto is not None and migration.version > upto):
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
