"""`wiretide query` without --limit streams the store in time slices: every call once, in
the order a single sorted read gives, however the slices fall."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schemas.records import ApiCall
from sinks.clickhouse import reader
from sinks.clickhouse.connect import open_store
from sinks.clickhouse.reader import read_calls, stream_calls
from sinks.clickhouse.writer import CallWriter
from wiretide.kfl import parse, to_sql

NOW = time.time_ns() - 3600 * 10**9


def _call(i: int) -> ApiCall:
    at = NOW + (i // 7) * 1_000_000  # seven calls share each instant: slices must not split them
    return ApiCall(
        call_id=f"c{(i * 7919) % 2000:05d}", protocol="http" if i % 3 else "redis", ts_ns=at,
        src_ip="10.0.0.1", src_port=40000 + i % 50, dst_ip=f"10.0.1.{i % 5}", dst_port=8080,
        flow_id=f"f{i % 50}", node="n", source="afpacket", method="GET", path=f"/p/{i}",
        status=200,
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    data: Path = tmp_path_factory.mktemp("stream")
    with open_store(f"chdb://{data}", ttl_days=0) as opened:
        calls = [_call(i) for i in range(2000)]
        writer = CallWriter(opened)
        writer.write(calls[:1200])
        writer.write(calls[800:])  # overlapping batches: copies that FINAL folds
        yield opened


@pytest.mark.parametrize("slice_calls", [6, 300, 100_000])
@pytest.mark.parametrize("kfl", ["", "redis", 'dst.ip == "10.0.1.3"'])
def test_slices_give_every_call_once_in_order(store, monkeypatch, slice_calls, kfl) -> None:
    where, params = to_sql(parse(kfl))
    whole = read_calls(store, limit=10**6, where_sql=where, params=params)
    monkeypatch.setattr(reader, "_SLICE_CALLS", slice_calls)
    streamed = list(stream_calls(store, where_sql=where, params=params))
    assert [c["id"] for c in streamed] == [c["id"] for c in whole]
    assert whole and (kfl or len(whole) == 2000)


def test_nothing_matching_streams_nothing(store) -> None:
    where, params = to_sql(parse('path == "/nowhere"'))
    assert list(stream_calls(store, where_sql=where, params=params)) == []
