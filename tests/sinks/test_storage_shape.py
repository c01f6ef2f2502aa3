"""The stored shape of issue 14 (migrations 6-8: codecs, a dictionary for paths, the
header-value and namespace indexes) on real embedded chDB: a data dir an older release
filled upgrades in place, keeps every call as it was, and header-value and namespace
filters read only the granules holding their value."""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect

from sinks.clickhouse import CallWriter, Store, open_store, read_calls
from sinks.clickhouse.ddl import HEADER_INDEX, MIGRATIONS, NAMESPACE_INDEX, migrate
from sinks.clickhouse.view import call_view
from tests.conftest import http_call
from wiretide.kfl import parse, to_sql

BASE = 1_777_636_800 * 10**9  # 2026-05-01T12:00:00Z


def calls(n: int):
    return [
        http_call(
            f"call-{i:06d}",
            BASE + i * 1_000_000,
            path=f"/api/v1/items/{i % 97}",
            dst_ip=f"10.0.1.{i // 10_000}",
            dst_namespace=f"ns{i // 10_000}",
            request_headers=(("Host", "shop"), ("X-Request-Id", f"req-{i:06d}")),
            request_end_ns=BASE + i * 1_000_000 + 40_000,
            response_headers=(("Content-Type", "application/json"), ("Date", f"d{i // 1000}")),
            response_body=b'{"id":%d}' % i,
            response_body_size=len(b'{"id":%d}' % i),
            response_ts_ns=BASE + i * 1_000_000 + 900_000 + i % 7,
            response_end_ns=BASE + i * 1_000_000 + 950_000,
        )
        for i in range(n)
    ]


def create_table(store: Store) -> str:
    return store.client.query("SHOW CREATE TABLE calls").result_rows[0][0]


def test_a_store_from_before_the_codecs_upgrades_in_place_and_keeps_its_calls(tmp_path: Path):
    directory = tmp_path / "store"
    stored = calls(3000)
    client = clickhouse_connect.get_client(interface="chdb", path=str(directory))
    try:
        assert migrate(client, upto=5) == [1, 2, 3, 4, 5]  # as the last release left it
        old = Store(client=client, where=str(directory), embedded=True)
        assert "CODEC(T64" not in create_table(old)
        CallWriter(old).write(stored)
    finally:
        client.close()

    with open_store(f"chdb://{directory}") as store:
        shape = create_table(store)
        assert "`response_ts_ns` Int64 CODEC(Delta(8), ZSTD(1))" in shape
        assert "`response_headers` Map(LowCardinality(String), String) CODEC(ZSTD(3))" in shape
        assert f"INDEX {HEADER_INDEX} mapValues(request_headers) TYPE bloom_filter" in shape
        assert "`path` LowCardinality(String)" in shape
        assert f"INDEX {NAMESPACE_INDEX} dst_namespace TYPE set" in shape
        versions = {
            v for (v,) in store.client.query("SELECT version FROM schema_migrations").result_rows
        }
        assert versions == {m.version for m in MIGRATIONS}
        expected = [call_view(call) for call in stored]
        assert read_calls(store) == expected
        store.client.command("OPTIMIZE TABLE calls FINAL")  # rewritten with the new codecs
        assert read_calls(store) == expected


def granules_kept(store: Store, index: str, where: str, params: dict) -> tuple[int, int]:
    """(granules `index` kept, granules it was given) for a count over `where`."""
    plan = "\n".join(
        row[0]
        for row in store.client.query(
            f"EXPLAIN indexes = 1 SELECT count() FROM calls WHERE {where}", parameters=params
        ).result_rows
    )
    kept, given = plan.split(f"Name: {index}")[1].split("Granules: ")[1].split()[0].split("/")
    return int(kept), int(given)


def test_header_value_and_namespace_filters_read_only_the_granules_holding_them(
    tmp_path: Path,
):
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        CallWriter(store).write(calls(40_000))
        store.client.command("OPTIMIZE TABLE calls FINAL")

        where, params = to_sql(parse('request.headers["X-Request-Id"] == "req-031337"'))
        found = read_calls(store, where_sql=where, params=params)
        assert [c["id"] for c in found] == ["call-031337"]
        kept, given = granules_kept(store, HEADER_INDEX, where, params)
        assert kept == 1 < given

        where, params = to_sql(parse('namespace == "ns2" and request.path.startsWith("/api")'))
        found = read_calls(store, where_sql=where, params=params)
        assert [c["id"] for c in found] == [f"call-{i:06d}" for i in range(20_000, 30_000)]
        kept, given = granules_kept(store, NAMESPACE_INDEX, where, params)
        assert kept <= 3 and given >= 4


def test_a_page_is_the_newest_matching_calls_whichever_window_holds_them(tmp_path: Path):
    hour = 3600 * 10**9
    # every 10 minutes for three days; every 50th call (~8 h apart) is a POST
    stored = [
        http_call(f"call-{i:04d}", BASE + i * hour // 6, method="POST" if i % 50 == 0 else "GET")
        for i in range(432)
    ]
    with open_store(f"chdb://{tmp_path / 'store'}") as store:
        CallWriter(store).write(stored)
        newest = [call_view(call) for call in stored]

        assert read_calls(store, limit=3) == newest[-3:]  # within the newest hour
        assert read_calls(store, limit=10) == newest[-10:]  # the newest day
        assert read_calls(store, limit=200) == newest[-200:]  # further back
        posts = [view for view in newest if view["request"]["method"] == "POST"]
        where, params = to_sql(parse('request.method == "POST"'))
        assert read_calls(store, where_sql=where, params=params, limit=4) == posts[-4:]
        assert read_calls(store, where_sql=where, params=params, limit=50) == posts
        assert read_calls(store, where_sql=where, params=params, limit=0) == []
