"""Tables on a ClickHouse cluster (`WIRETIDE_CLICKHOUSE_CLUSTER`). No ClickHouse cluster
(or Keeper) runs here, so chDB's parser checks every ON CLUSTER statement (EXPLAIN AST)
and the tests check what the statements say; the single-server path runs for real in
test_clickhouse.py."""

from __future__ import annotations

import chdb
import pytest

from sinks.clickhouse.ddl import MIGRATIONS, cluster_migrations, ttl_statements


def parses(statement: str) -> bool:
    return "Query" in chdb.query("EXPLAIN AST " + statement, "CSV").bytes().decode()


def test_every_cluster_statement_parses_and_runs_on_the_cluster():
    migrations = cluster_migrations("wiretide")
    assert [m.version for m in migrations] == [m.version for m in MIGRATIONS]
    for m in migrations:
        for statement in m.statements:
            assert parses(statement), statement
            assert "ON CLUSTER 'wiretide'" in statement
    for statement in ttl_statements(30, "wiretide") + ttl_statements(0, "wiretide"):
        assert parses(statement) and "calls_local ON CLUSTER" in statement


def test_shards_are_replicated_and_calls_are_sharded_by_call_id():
    local, distributed = cluster_migrations("prod-ch")[0].statements
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/" in local
    assert "ORDER BY (protocol, toStartOfHour(ts), dst_ip, ts, call_id)" in local
    # a replayed call has the same id, so the same shard: it collapses there
    assert "Distributed('prod-ch', currentDatabase(), calls_local, cityHash64(call_id))" in (
        distributed
    )


def test_same_columns_on_a_cluster_as_on_one_server():
    single = MIGRATIONS[0].statements[0]
    local = cluster_migrations("c")[0].statements[0]
    columns = [line.strip() for line in single.splitlines() if line.startswith("    ")]
    assert columns and all(column in local for column in columns)
    added = [s.split("IF NOT EXISTS ")[1] for s in MIGRATIONS[1].statements]
    assert all(any(a in s for s in cluster_migrations("c")[1].statements) for a in added)


@pytest.mark.parametrize("name", ["", "a b", "x'; DROP TABLE calls; --"])
def test_bad_cluster_names_are_refused(name):
    with pytest.raises(ValueError, match="bad ClickHouse cluster name"):
        cluster_migrations(name)
