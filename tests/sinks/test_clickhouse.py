"""The ClickHouse sink against real embedded chDB in temp dirs (no mocks).

chDB hosts one data dir per process (another dir opens only after every client of the
first is closed), so each test closes its store, and tests that need a second owner of
a dir run it in a subprocess.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from schemas.records import ApiCall
from sinks.clickhouse import CallWriter, count_calls, open_store, read_calls
from sinks.clickhouse.arrow import COLUMNS
from sinks.clickhouse.ddl import MIGRATIONS, migrate
from sinks.clickhouse.view import call_view
from sinks.clickhouse.writer import StoreUnavailable
from sinks.errors import SinkError
from tests.conftest import http_call
from wiretide.kfl.selectors import SELECTORS

REPO = Path(__file__).resolve().parents[2]
NOW = time.time_ns() - 60 * 1_000_000_000


def make_call(i: int, **fields) -> ApiCall:
    ts = NOW + i * 1_000_000
    base = dict(
        call_id=f"call-{i:05d}",
        ts_ns=ts,
        src_port=40000 + i,
        flow_id=f"tcp:10.0.0.1:{40000 + i}-10.0.0.2:8080",
        node="node-a",
        source="afpacket",
        path="/api/items",
        request_headers=(("Host", "svc"), ("Accept", "*/*")),
        request_end_ns=ts + 10,
        response_body=b'{"ok":true}',
        response_body_size=11,
        response_ts_ns=ts + 2_500_000,
        response_end_ns=ts + 2_600_000,
    )
    call = {**base, **fields}
    return http_call(call.pop("call_id"), call.pop("ts_ns"), **call)


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(data_dir: Path):
    with open_store(f"chdb://{data_dir}") as opened:
        yield opened


def show_create(store) -> str:
    return store.client.query("SHOW CREATE TABLE calls").result_rows[0][0]


# --- round trip ---------------------------------------------------------------------


def test_round_trip_of_every_field_kind(store):
    full = make_call(
        1,
        protocol="http",
        src_ip="fd00::1",
        src_port=65535,
        dst_ip="2001:db8::2",
        dst_port=0,
        tls=True,
        method="POST",
        path="/ünïcødé/😀",
        query="q=caf%C3%A9&x=é",
        request_headers=(("Content-Type", "application/json"), ("X-Trace", "a"), ("x-trace", "b")),
        request_body='{"name":"Zoë","emoji":"🎉"}'.encode(),
        request_body_size=2**40,
        status=201,
        reason="Créé",
        response_version="HTTP/2",
        response_headers=(("Set-Cookie", "a=1"), ("SET-COOKIE", "b=2"), ("Server", "ñginx")),
        response_body=b"\x89PNG\r\n\x1a\n\x00\xff\xfe",
        response_body_size=9,
        flags=("response_truncated", "gap"),
        src_pod="front-7d9c-x2",
        src_namespace="shop",
        dst_namespace="shop",
        dst_service="catalogue",
    )
    bare = make_call(
        2,
        request_headers=(),
        request_end_ns=0,
        status=0,
        reason="",
        response_version="",
        response_headers=(),
        response_body=b"",
        response_body_size=0,
        response_ts_ns=0,
        response_end_ns=0,
        flags=("no_response",),
    )
    cut = make_call(3, request_body="naïve café".encode()[:-1], response_body=b"a\x00b")
    CallWriter(store).write([cut, bare, full])

    got = read_calls(store)

    assert [c["id"] for c in got] == ["call-00001", "call-00002", "call-00003"]
    assert got == [call_view(full), call_view(bare), call_view(cut)]
    one, two, three = got
    assert one["timestamp_ns"] == full.ts_ns
    assert one["timestamp"].endswith("Z") and len(one["timestamp"]) == len(
        "2026-01-01T00:00:00.000000Z"
    )
    assert one["elapsed_ms"] == pytest.approx(2.5)
    assert one["src"] == {
        "ip": "fd00::1",
        "port": 65535,
        "name": "front-7d9c-x2",
        "namespace": "shop",
        "pod": {"name": "front-7d9c-x2", "namespace": "shop"},
        "service": None,
    }
    assert one["dst"]["name"] == "catalogue" and one["dst"]["pod"] is None
    assert one["dst"]["service"] == {"name": "catalogue", "namespace": "shop"}
    assert two["src"]["name"] is None and two["dst"]["namespace"] is None
    assert one["tls"] is True and one["flags"] == ["response_truncated", "gap"]
    request, response = one["request"], one["response"]
    assert request["path"] == "/ünïcødé/😀" and request["query"] == "q=caf%C3%A9&x=é"
    assert request["headers"] == {"content-type": "application/json", "x-trace": "a, b"}
    assert request["body"] == '{"name":"Zoë","emoji":"🎉"}' and request["body_encoding"] == "utf-8"
    assert request["body_size"] == 2**40
    assert response["headers"] == {"set-cookie": "a=1, b=2", "server": "ñginx"}
    assert response["body_encoding"] == "base64"
    assert base64.b64decode(response["body"]) == b"\x89PNG\r\n\x1a\n\x00\xff\xfe"
    assert (response["status"], response["reason"], response["version"]) == (201, "Créé", "HTTP/2")

    assert two["response"] is None and two["elapsed_ms"] is None
    assert two["request"]["headers"] == {} and two["request"]["body"] == ""

    assert three["request"]["body"] == "naïve caf\ufffd"  # cut by the cap mid-character
    assert three["request"]["body_encoding"] == "utf-8"
    assert three["response"]["body_encoding"] == "base64"  # NUL byte: binary


def test_reads_are_ordered_and_limit_keeps_the_newest(store):
    calls = [make_call(i) for i in range(20)]
    tie = make_call(99, call_id="call-00005b", ts_ns=calls[5].ts_ns)
    CallWriter(store).write([*reversed(calls), tie])

    ids = [c["id"] for c in read_calls(store)]
    assert ids[:7] == [f"call-0000{i}" for i in range(5)] + ["call-00005", "call-00005b"]
    assert [c["id"] for c in read_calls(store, limit=3)] == [
        "call-00017",
        "call-00018",
        "call-00019",
    ]
    assert read_calls(store, limit=0) == []


def test_protocol_and_where_filters_use_bound_parameters(store):
    calls = [make_call(i, protocol="grpc" if i % 2 else "http", status=500 + i) for i in range(6)]
    CallWriter(store).write(calls)

    assert count_calls(store, "grpc") == 3
    assert [c["id"] for c in read_calls(store, protocol="grpc")] == [
        "call-00001",
        "call-00003",
        "call-00005",
    ]
    hostile = "x' OR 1=1 --"
    assert read_calls(store, where_sql="path = {p:String}", params={"p": hostile}) == []
    got = read_calls(
        store,
        protocol="http",
        where_sql="status >= {s:UInt16} AND request_headers['host'] = {h:String}",
        params={"s": 502, "h": "svc"},
    )
    assert [c["id"] for c in got] == ["call-00002", "call-00004"]


def test_text_that_arrow_cannot_encode_does_not_fail_the_batch(store):
    bad = make_call(1, path="/bad\udcff", request_headers=(("X-Bad\udc80", "v\ud800"),))
    CallWriter(store).write([bad, make_call(2)])

    first = read_calls(store)[0]
    assert first["request"]["path"] == "/bad?"
    assert first["request"]["headers"] == {"x-bad?": "v?"}
    assert count_calls(store) == 2


def test_old_captures_are_kept_for_the_ttl_after_ingest(store):
    old = make_call(1, ts_ns=1_420_070_400_000_000_000)  # 2015: a replayed capture
    CallWriter(store).write([old])

    assert [c["timestamp"] for c in read_calls(store)] == ["2015-01-01T00:00:00.000000Z"]


# --- idempotency --------------------------------------------------------------------


def test_overlapping_and_repeated_batches_leave_each_call_once(store):
    calls = [make_call(i) for i in range(100)]
    writer = CallWriter(store)
    writer.write(calls[:60])
    writer.write(calls[40:])
    writer.write(calls[:60])
    writer.write(calls[10:20] + calls[10:20])  # duplicates inside one batch

    stored = store.client.query("SELECT count() FROM calls").result_rows[0][0]
    assert stored > 100  # copies are on disk until a merge; readers must not see them
    assert count_calls(store) == 100
    assert count_calls(store, "http") == 100
    got = read_calls(store)
    assert [c["id"] for c in got] == [c.call_id for c in calls]
    assert len(read_calls(store, where_sql="status = 200")) == 100


def test_a_retried_batch_is_not_doubled_after_merges(store):
    calls = [make_call(i) for i in range(50)]
    writer = CallWriter(store)
    writer.write(calls)
    writer.write(list(reversed(calls)))
    store.client.command("OPTIMIZE TABLE calls FINAL")

    assert store.client.query("SELECT count() FROM calls").result_rows[0][0] == 50
    assert count_calls(store) == 50


def test_empty_write_is_a_no_op(store):
    CallWriter(store).write([])
    assert count_calls(store) == 0
    assert read_calls(store) == []


# --- schema -------------------------------------------------------------------------


def test_migrations_run_twice_are_a_no_op(data_dir):
    with open_store(f"chdb://{data_dir}") as store:
        CallWriter(store).write([make_call(1)])
        before = show_create(store)
        assert migrate(store.client) == []
    with open_store(f"chdb://{data_dir}") as store:
        assert show_create(store) == before
        versions = store.client.query("SELECT version FROM schema_migrations").result_rows
        assert sorted(v for (v,) in versions) == [m.version for m in MIGRATIONS]
        assert count_calls(store) == 1


def test_calls_table_has_the_designed_shape(store):
    ddl = show_create(store)
    for part in (
        "ENGINE = ReplacingMergeTree",
        "PARTITION BY toDate(ts)",
        "ORDER BY (protocol, toStartOfHour(ts), dst_ip, ts, call_id)",
        "`ts` DateTime64(9, 'UTC')",
        "`protocol` LowCardinality(String)",
        "`method` LowCardinality(String)",
        "`request_headers` Map(LowCardinality(String), String)",
        "`response_body` String CODEC(ZSTD(3))",
        "`flags` Array(LowCardinality(String))",
        "`src_port` UInt16",
        "`elapsed_ns` Int64",
        "INDEX idx_call_id call_id TYPE bloom_filter",
        "INDEX idx_status status TYPE minmax",
    ):
        assert part in ddl
    columns = {
        name
        for (name,) in store.client.query(
            "SELECT name FROM system.columns WHERE table = 'calls'"
        ).result_rows
    }
    assert columns == {*COLUMNS, "ingested_at"}


def test_ttl_comes_from_config_and_changes_with_it(data_dir):
    dsn = f"chdb://{data_dir}"
    with open_store(dsn) as store:
        assert "TTL ingested_at + toIntervalDay(7)" in show_create(store)
        CallWriter(store).write([make_call(1)])
    with open_store(dsn, ttl_days=30) as store:
        assert "TTL ingested_at + toIntervalDay(30)" in show_create(store)
    with open_store(dsn, ttl_days=0) as store:
        assert "TTL" not in show_create(store)
    with open_store(dsn, ttl_days=3) as store:
        assert "TTL ingested_at + toIntervalDay(3)" in show_create(store)
        assert count_calls(store) == 1


@pytest.mark.parametrize("ttl", [-1, 1.5, "7", True])
def test_a_bad_ttl_is_refused(data_dir, ttl):
    with pytest.raises(SinkError, match="ttl_days"):
        open_store(f"chdb://{data_dir}", ttl_days=ttl)


# --- errors -------------------------------------------------------------------------

_HOLD = textwrap.dedent(
    """
    import sys
    from sinks.clickhouse import open_store
    from sinks.errors import SinkError
    try:
        store = open_store(sys.argv[1])
    except SinkError as ex:
        print("SinkError:", ex, flush=True)
        sys.exit(3)
    print("ready", flush=True)
    sys.stdin.readline()
    store.close()
    """
)


def _python(dsn: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", _HOLD, dsn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_a_dir_held_by_another_process_gives_a_one_line_error(data_dir):
    dsn = f"chdb://{data_dir}"
    holder = _python(dsn)
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        with pytest.raises(SinkError) as caught:
            open_store(dsn)
        message = str(caught.value)
        assert one_line(message)
        assert str(data_dir) in message
        assert "another wiretide process" in message and f"pid {holder.pid}" in message
    finally:
        holder.communicate("\n", timeout=60)
    with open_store(dsn) as store:  # released once the owner has gone
        assert count_calls(store) == 0


def test_the_second_process_gets_the_one_line_error_and_no_noise(store, data_dir):
    second = _python(f"chdb://{data_dir}")
    out, err = second.communicate("\n", timeout=60)

    assert second.returncode == 3
    assert out.startswith("SinkError: chDB data dir ") and one_line(out.strip())
    assert f"pid {os.getpid()}" in out
    assert err == ""


def test_a_second_dir_in_one_process_is_refused(store, tmp_path, capfd):
    with pytest.raises(SinkError, match="one data dir per process") as caught:
        open_store(f"chdb://{tmp_path / 'other'}")
    assert one_line(str(caught.value))
    assert capfd.readouterr() == ("", "")
    assert count_calls(store) == 0  # the open store is unharmed


def test_the_same_dir_twice_in_one_process_shares_the_engine(store, data_dir):
    CallWriter(store).write([make_call(1)])
    with open_store(f"chdb://{data_dir}/") as again:
        assert count_calls(again) == 1
    assert count_calls(store) == 1


def test_a_dir_left_by_a_killed_process_opens(data_dir):
    holder = _python(f"chdb://{data_dir}")
    assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
    holder.kill()  # no clean shutdown: the status file stays, its lock goes
    holder.communicate(timeout=60)
    assert (data_dir / "status").exists()
    with open_store(f"chdb://{data_dir}") as store:
        assert count_calls(store) == 0


@pytest.mark.parametrize(
    "dsn",
    [
        "",
        "clickhouse://host:9000",
        "chdb://relative/dir",
        "chdb:relative",
        "chdb:///",
        "chdb:///tmp/x?mode=ro",
        "http://",
        "http://host:notaport",
    ],
)
def test_a_bad_dsn_gives_a_one_line_error(dsn):
    with pytest.raises(SinkError, match="bad store DSN") as caught:
        open_store(dsn)
    assert one_line(str(caught.value))


def test_an_unreachable_server_gives_a_one_line_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SinkError) as caught:
        open_store(f"http://wiretide:s3cret@127.0.0.1:{port}/calls")
    message = str(caught.value)
    assert message == (
        f"cannot reach ClickHouse at http://127.0.0.1:{port}: connection refused; "
        "is the server running?"
    )


def test_a_call_that_does_not_fit_the_columns_is_rejected_and_the_rest_stored(store):
    bad = make_call(2, src_port=70000)  # not from serde (which clamps): another producer
    rejected = CallWriter(store).write([make_call(1), bad, make_call(3)])
    assert [r.call for r in rejected] == [bad]
    assert one_line(rejected[0].reason) and "call-00002" in rejected[0].reason
    assert sorted(c["id"] for c in read_calls(store)) == ["call-00001", "call-00003"]


def test_a_failed_insert_raises_one_line(data_dir):
    store = open_store(f"chdb://{data_dir}")
    writer = CallWriter(store)
    store.close()
    with pytest.raises(StoreUnavailable, match="insert of 1 calls into .* failed") as caught:
        writer.write([make_call(1)])
    assert one_line(str(caught.value))


def test_call_view_matches_for_live_and_stored_calls(store):
    live = replace(make_call(7), request_headers=(("A", "1"), ("a", "2")))
    CallWriter(store).write([live])
    assert read_calls(store) == [call_view(live)]


def test_selector_sql_agrees_with_the_view(store):
    answered = make_call(1, request_body=b"hello", response_headers=(("X-A", "1"),))
    unanswered = make_call(2, response_ts_ns=0, status=0, response_headers=())
    CallWriter(store).write([answered, unanswered])
    views = {v["id"]: v for v in read_calls(store)}
    names = list(SELECTORS)
    select = ", ".join(f"{SELECTORS[name]} AS `{name}`" for name in names if name != "timestamp")
    result = store.client.query(
        f"SELECT call_id, {select} FROM calls FINAL",
        column_formats={"request.body": "bytes", "response.body": "bytes"},
    )
    for row in result.named_results():
        view = views[row["call_id"]]
        for name, value in row.items():
            if name == "call_id":
                continue
            expected = view
            for part in name.split("."):
                expected = None if expected is None else expected[part]
            if name.endswith(".body") and value is not None:
                value = value.decode()
            assert value == expected, name


def test_readers_leave_the_writers_retention_alone(data_dir):
    dsn = f"chdb://{data_dir}"
    with open_store(dsn, ttl_days=30):
        pass
    with open_store(dsn, ttl_days=None) as reader:  # `wiretide query`, the hub
        assert "TTL ingested_at + toIntervalDay(30)" in show_create(reader)
