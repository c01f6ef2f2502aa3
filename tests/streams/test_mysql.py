"""MySQL dissector: the golden capture (mariadb CLI, PyMySQL and mysql-connector's
prepared statements against a real MariaDB) checked against what the clients saw, edge
cases on hand-made packets, and Hypothesis properties."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from hypothesis import given, settings

from schemas.records import ApiCall
from streams.dissect.base import DissectFailed
from streams.dissect.mysql import MYSQL, MySqlDissector
from streams.dissect.mysql import parser as p
from streams.reassembly.events import Flow
from tests.streams.dissect_kit import (
    JUNK_STEPS,
    C,
    S,
    assert_capped,
    call_header,
    calls_of,
    dialog_chunks,
    flows_in,
    replay,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "mysql"
FLOWS = sorted(flows_in(GOLDEN / "basic.pcap"), key=lambda f: f[1][0][2])
FACTS = json.loads((GOLDEN / "basic.client.json").read_text())


def header(call: ApiCall, name: str, response: bool = True) -> str | None:
    return call_header(call, name, response)


def session(k: int) -> list[ApiCall]:
    flow, chunks = FLOWS[k]
    return calls_of(replay(MYSQL, flow, chunks))


def test_three_sessions_dissect_without_failures():
    assert len(FLOWS) == 3
    for flow, chunks in FLOWS:
        events = replay(MYSQL, flow, chunks)
        assert not [e for e in events if isinstance(e, DissectFailed)]
        calls = calls_of(events)
        assert calls[0].method == "handshake" and calls[-1].method == "COM_QUIT"
        assert all("no_response" not in c.flags for c in calls)


def test_cli_queries_match_what_the_cli_printed():
    cli = FACTS["cli"]
    calls = session(0)
    queries = [c for c in calls if c.method == "COM_QUERY"]
    assert [c.path for c in queries] == cli["statements"]
    create, insert, select, bad = queries
    assert create.status == 0 and header(insert, "affected_rows") == "3"
    printed = [line.split("\t") for line in cli["stdout"].splitlines()]
    body = json.loads(select.response_body)
    assert body["columns"] == ["id", "name", "price"]
    assert [[v if v is not None else "NULL" for v in row] for row in body["rows"]] == printed
    assert header(select, "rows") == str(len(printed))
    assert f"ERROR {bad.status} ({bad.reason[:5]})" in cli["stderr"]
    assert bad.reason[6:] in cli["stderr"]


def test_pymysql_session_matches_what_pymysql_got():
    update, dup, select, init_db = FACTS["pymysql"]
    calls = {c.path: c for c in session(1)}
    assert header(calls[update["sql"]], "affected_rows") == str(update["affected_rows"])
    err = calls[dup["sql"]]
    assert err.status == dup["errno"] and err.reason == f"23000 {dup['message']}"
    assert json.loads(calls[select["sql"]].response_body)["rows"] == select["rows"]
    (init,) = [c for c in session(1) if c.method == "COM_INIT_DB"]
    assert init.path == init_db["init_db"] and init.status == 0
    (ping,) = [c for c in session(1) if c.method == "COM_PING"]
    assert ping.status == 0 and ping.response_ts_ns > ping.ts_ns


def test_prepared_statement_matches_what_the_connector_got():
    (fact,) = FACTS["prepared"]
    calls = session(2)
    (prepare,) = [c for c in calls if c.method == "COM_STMT_PREPARE"]
    (execute,) = [c for c in calls if c.method == "COM_STMT_EXECUTE"]
    (closing,) = [c for c in calls if c.method == "COM_STMT_CLOSE"]
    assert prepare.path == execute.path == closing.path == fact["sql"]
    assert header(prepare, "params") == "2" and header(prepare, "columns") == "3"
    stmt_id = header(prepare, "statement_id")
    assert header(execute, "statement_id", response=False) == stmt_id
    assert json.loads(execute.request_body) == [str(v) for v in fact["params"]]
    assert json.loads(execute.response_body)["rows"] == fact["rows"]


def test_logins_carry_user_database_and_client_but_never_the_auth_response():
    for k, client in enumerate(("mysql", "pymysql", "mysql-connector-python")):
        flow, chunks = FLOWS[k]
        login = next(data for d, data, _, _ in chunks if d == C)
        payload = login[4:]
        r = p.Reader(payload, 32)
        r.cstring()
        scramble = r.lenenc_bytes() if payload[2] & 0x20 else r.bytes(r.int(1))
        assert len(scramble) == 20
        handshake = session(k)[0]
        assert header(handshake, "user", response=False) == "golden"
        assert header(handshake, "client", response=False) == client
        assert handshake.path == "shop" and handshake.status == 0
        for call in session(k):
            text = repr(call)
            assert repr(scramble)[2:-1] not in text and scramble.hex() not in text


# ------------------------------------------------------------- hand-made bytes

FLOW = Flow("tcp:10.0.0.1:40000-10.0.0.2:3306", "10.0.0.1", 40000, "10.0.0.2", 3306)


def pkt(seq_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq_id]) + payload


def lenenc(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def greeting(caps: int) -> bytes:
    body = b"\x0a" + b"8.0.36\0" + struct.pack("<I", 7) + b"12345678\0"
    body += struct.pack("<HBHH", caps & 0xFFFF, 33, 2, caps >> 16) + bytes([21]) + b"\0" * 10
    return pkt(0, body + b"123456789012\0" + b"mysql_native_password\0")


def login(caps: int, user: str = "app", db: str = "shop") -> bytes:
    body = struct.pack("<IIB", caps, 1 << 24, 33) + b"\0" * 23 + user.encode() + b"\0"
    body += lenenc(b"S" * 20) + db.encode() + b"\0" + b"mysql_native_password\0"
    return pkt(1, body)


CAPS = 0x200 | 0x8000 | 0x8 | 0x80000 | 0x200000
OK = pkt(2, b"\x00\x00\x00\x02\x00\x00\x00")


def coldef(name: str, ctype: int, flags: int = 0) -> bytes:
    body = lenenc(b"def") + lenenc(b"shop") + lenenc(b"t") + lenenc(b"t")
    body += lenenc(name.encode()) + lenenc(name.encode()) + b"\x0c"
    return body + struct.pack("<HIBHB", 33, 11, ctype, flags, 0) + b"\0\0"


def run(*steps, make=MYSQL) -> list:
    return replay(make, FLOW, dialog_chunks(steps))


def test_deprecate_eof_result_set_ends_with_an_ok():
    caps = CAPS | p.CLIENT_DEPRECATE_EOF
    rows = pkt(1, b"\x01") + pkt(2, coldef("n", 8)) + pkt(3, lenenc(b"42"))
    done = pkt(4, b"\xfe\x00\x00\x02\x00\x00\x00")
    pong = pkt(1, b"\x00\x00\x00\x02\x00\x00\x00")
    calls = calls_of(run((S, greeting(caps)), (C, login(caps)), (S, OK),
                         (C, pkt(0, b"\x03SELECT 42 AS n")), (S, rows + done),
                         (C, pkt(0, b"\x0e")), (S, pong)))  # fmt: skip
    _, query, ping = calls
    assert json.loads(query.response_body) == {"columns": ["n"], "rows": [["42"]]}
    assert ping.method == "COM_PING" and ping.status == 0


def test_multiple_result_sets_show_the_first_and_end_with_the_last():
    eof_more = pkt(3, b"\xfe\x00\x00\x0a\x00")  # SERVER_MORE_RESULTS_EXISTS
    first = pkt(1, b"\x01") + pkt(2, coldef("a", 253)) + pkt(3, b"\xfe\0\0\x02\0")
    first += pkt(4, lenenc(b"x")) + pkt(5, b"\xfe\x00\x00\x0a\x00")
    second = pkt(6, b"\x01") + pkt(7, coldef("b", 253)) + pkt(8, b"\xfe\0\0\x02\0")
    second += pkt(9, lenenc(b"y")) + pkt(10, lenenc(b"z")) + pkt(11, b"\xfe\0\0\x02\0")
    assert eof_more
    (call,) = calls_of(run((C, pkt(0, b"\x03CALL two()")), (S, first + second)))
    assert json.loads(call.response_body) == {"columns": ["a"], "rows": [["x"]]}
    assert header(call, "rows") == "3" and call.response_end_ns == 2000


def test_binary_rows_render_simple_types():
    cols = [coldef("i", 3), coldef("d", 5), coldef("t", 12), coldef("s", 253), coldef("n", 3)]
    head = pkt(1, b"\x05") + b"".join(pkt(2 + k, c) for k, c in enumerate(cols))
    head += pkt(7, b"\xfe\0\0\x02\0")
    bitmap = bytes([1 << (4 + 2)])  # column 4 (n) is NULL; bits start at 2
    values = struct.pack("<i", -5) + struct.pack("<d", 2.5)
    values += bytes([7]) + struct.pack("<H", 2024) + bytes([2, 29, 13, 5, 9]) + lenenc(b"hi")
    row = pkt(8, b"\x00" + bitmap + values)
    prepare = pkt(0, b"\x16SELECT i, d, t, s, n FROM x")
    stmt_ok = pkt(1, b"\x00" + struct.pack("<IHHBH", 9, 5, 0, 0, 0))
    stmt_cols = b"".join(pkt(2 + k, c) for k, c in enumerate(cols)) + pkt(7, b"\xfe\0\0\x02\0")
    execute = pkt(0, b"\x17" + struct.pack("<IBI", 9, 0, 1))
    calls = calls_of(run((C, prepare), (S, stmt_ok + stmt_cols), (C, execute),
                         (S, head + row + pkt(9, b"\xfe\0\0\x02\0"))))  # fmt: skip
    assert [c.method for c in calls] == ["COM_STMT_PREPARE", "COM_STMT_EXECUTE"]
    body = json.loads(calls[1].response_body)
    assert body["rows"] == [["-5", "2.5", "2024-02-29 13:05:09", "hi", None]]
    assert calls[1].path == "SELECT i, d, t, s, n FROM x"


def test_auth_switch_never_records_the_password_reply():
    switch = pkt(2, b"\xfecaching_sha2_password\0nonce-nonce-nonce-nonc\0")
    calls = calls_of(run((S, greeting(CAPS)), (C, login(CAPS)), (S, switch),
                         (C, pkt(3, b"hunter2-password-scramble")), (S, pkt(4, b"\x01\x03")),
                         (S, pkt(5, b"\x00\x00\x00\x02\x00\x00\x00"))))  # fmt: skip
    (hs,) = calls
    assert hs.status == 0 and header(hs, "auth_switch") == "caching_sha2_password"
    assert "hunter2" not in repr(hs) and "SSSS" not in repr(hs)


def test_login_error_and_ssl_request():
    err = pkt(2, b"\xff\x15\x04#28000Access denied for user 'app'")
    (call,) = calls_of(run((S, greeting(CAPS)), (C, login(CAPS)), (S, err)))
    assert (call.status, call.reason) == (1045, "28000 Access denied for user 'app'")
    ssl = pkt(1, struct.pack("<IIB", CAPS | p.CLIENT_SSL, 1 << 24, 33) + b"\0" * 23)
    events = run((S, greeting(CAPS | p.CLIENT_SSL)), (C, ssl), (C, b"\x16\x03\x01\x00\x10junk"))
    (call,) = calls_of(events)
    assert header(call, "tls", response=False) == "requested" and call.flags == ("tls",)


def test_huge_row_is_cut_without_buffering_it():
    d = MySqlDissector(FLOW, max_payload=1024)
    d.receive(C, pkt(0, b"\x03SELECT big"), 1, 1)
    head = pkt(1, b"\x01") + pkt(2, coldef("b", 252)) + pkt(3, b"\xfe\0\0\x02\0")
    size = 3_000_000
    big = (size + 4).to_bytes(3, "little") + b"\x04" + b"\xfd" + size.to_bytes(3, "little")
    d.receive(S, head + big, 2, 1)
    seq = 1 + len(head + big)
    for _ in range(size // 65536):
        d.receive(S, b"x" * 65536, 3, seq)
        seq += 65536
        assert d.buffered <= 1024 + 4 + 64
    (call,) = calls_of(d.receive(S, b"x" * (size % 65536) + pkt(5, b"\xfe\0\0\x02\0"), 4, seq))
    assert "response_truncated" in call.flags and header(call, "rows") == "1"


def test_lost_bytes_flag_pending_commands():
    d = MYSQL(FLOW)
    d.receive(C, pkt(0, b"\x03SELECT 1"), 1, 1)
    events = d.gap(S, 10, 2)
    (call,) = calls_of(events)
    assert "gap" in call.flags and "no_response" in call.flags and d.idle


def test_probe():
    assert MYSQL.probe(greeting(CAPS)) == 1.0
    assert MYSQL.probe(pkt(0, b"\x03SELECT 1")) == 0.6
    assert MYSQL.probe(b"GET / HTTP/1.1\r\n") == 0.0
    assert MYSQL.probe(b"\x00\x00\x00\x08\x04\xd2\x16\x2f") == 0.0  # PostgreSQL SSLRequest


# ----------------------------------------------------------------- properties
# Framing, gaps, close and fuzz over the golden capture: tests/streams/test_dissector_contract.py


@settings(max_examples=300, deadline=None)
@given(junk=JUNK_STEPS)
def test_junk_keeps_the_buffers_under_the_cap(junk):
    d = MySqlDissector(FLOW, max_payload=256)
    assert_capped(d, [(S, greeting(CAPS)), *junk], 2 * (256 + 4) + 4096)
