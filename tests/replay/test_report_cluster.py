"""replay_results on a ClickHouse cluster: no cluster runs here, so chDB's parser checks
the ON CLUSTER statements (as tests/sinks/test_cluster_ddl.py does for calls)."""

from __future__ import annotations

import chdb

from sinks.clickhouse.replay_results import create_statements


def test_cluster_statements_parse_and_shard_by_run():
    local, distributed = create_statements("prod-ch")
    for statement in (local, distributed):
        explained = chdb.query("EXPLAIN AST " + statement, "CSV").bytes().decode()
        assert "Query" in explained and "ON CLUSTER 'prod-ch'" in statement
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/" in local
    assert "ORDER BY (run_id, call_id, copy)" in local
    assert "cityHash64(run_id)" in distributed
    assert create_statements()[0].count("ReplacingMergeTree") == 1
