"""PostgreSQL dissector: the golden capture (psql and psycopg against a real server)
checked against what the clients saw, edge cases on hand-made messages, and Hypothesis
properties (any cut and interleaving gives the same calls; junk never breaks it).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from hypothesis import given, settings

from schemas.records import ApiCall
from streams.dissect.base import DissectFailed
from streams.dissect.postgresql import POSTGRESQL, PostgresDissector
from streams.reassembly.events import Flow
from tests.streams.dissect_kit import (
    JUNK_STEPS,
    C,
    S,
    assert_capped,
    call_header,
    calls_of,
    dialog_chunks,
    failures_of,
    flows_in,
    replay,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "postgresql"

# ---------------------------------------------------------------- the capture

FLOWS = flows_in(GOLDEN / "basic.pcap")
FACTS = json.loads((GOLDEN / "basic.client.json").read_text())
PASSWORD = "golden-secret-pw"


def golden_calls() -> list[ApiCall]:
    out = []
    for flow, chunks in FLOWS:
        out += calls_of(replay(POSTGRESQL, flow, chunks))
    return sorted(out, key=lambda c: c.ts_ns)


def header(call: ApiCall, name: str, response: bool = True) -> str | None:
    return call_header(call, name, response)


def dollar_params(sql: str) -> str:
    """psycopg's %s placeholders as the server sees them ($1, $2...)."""
    n = iter(range(1, 100))
    return re.sub(r"%s", lambda _: f"${next(n)}", sql)


def test_capture_holds_two_sessions_and_nothing_fails():
    events = [e for flow, chunks in FLOWS for e in replay(POSTGRESQL, flow, chunks)]
    assert len(FLOWS) == 2
    assert not [e for e in events if isinstance(e, DissectFailed)]
    assert all("no_response" not in c.flags for c in calls_of(events))


def test_psql_simple_queries_match_what_psql_printed():
    calls = golden_calls()
    psql = FACTS["psql"]
    queries = [c for c in calls if c.method == "query"][: len(psql["commands"])]
    assert [c.path for c in queries] == psql["commands"]
    create, insert, select, bad, multi = queries
    assert header(create, "command") == "CREATE TABLE" and create.status == 0
    assert header(insert, "command") == "INSERT 0 3" and header(insert, "rows") == "3"
    body = json.loads(select.response_body)
    assert body["columns"] == ["id", "name", "price"]
    printed = psql["stdout"].splitlines()[2:5]  # -A -t: one row per line, | between
    assert ["|".join(v or "" for v in row) for row in body["rows"]] == printed
    assert header(select, "rows") == "3"
    assert bad.status == 1
    sqlstate, _, message = bad.reason.partition(" ")
    assert sqlstate == "42601" and f"ERROR:  {message}" in psql["stderr"]
    assert [v for k, v in multi.response_headers if k == "command"] == ["SELECT 1", "SELECT 1"]


def test_startups_carry_database_user_and_application():
    psql_start, psycopg_start = [c for c in golden_calls() if c.method == "startup"]
    for call, app in ((psql_start, "psql"), (psycopg_start, "wiretide-golden")):
        assert call.path == "postgres" and call.status == 0
        assert header(call, "user", response=False) == "postgres"
        assert header(call, "application_name", response=False) == app
        assert header(call, "mechanism") == "SCRAM-SHA-256"
    # psql asked for TLS first (sslmode=prefer) and the server (ssl=off) said no.
    assert header(psql_start, "ssl", response=False) == "refused"
    assert header(psycopg_start, "ssl", response=False) is None


def test_psycopg_extended_queries_match_what_psycopg_got():
    executes = [c for c in golden_calls() if c.method == "execute"]
    facts = FACTS["psycopg"]
    assert [c.path for c in executes] == [dollar_params(f["sql"]) for f in facts]
    for call, fact in zip(executes, facts, strict=True):
        assert json.loads(call.request_body) == [str(p) for p in fact["params"]]
        if "rows" in fact:
            assert json.loads(call.response_body)["rows"] == fact["rows"]
        if "rowcount" in fact:
            assert header(call, "rows") == str(fact["rowcount"])
        if "sqlstate" in fact:
            assert call.status == 1
            assert call.reason == f"{fact['sqlstate']} {fact['message']}"
        else:
            assert call.status == 0
        assert (header(call, "statement", response=False) or "").startswith("_pg3_") == bool(
            fact.get("prepared")
        )


def test_no_authentication_data_reaches_a_call():
    for flow, chunks in FLOWS:
        sasl = [data for d, data, _, _ in chunks if d == C and data[:1] == b"p"]
        assert sasl, "the capture should hold SASL messages"
        nonce = re.search(rb"r=([^,\0]+)", sasl[0]).group(1)
        for call in calls_of(replay(POSTGRESQL, flow, chunks)):
            text = repr(call).encode()
            assert nonce not in text and b"SCRAM" not in call.request_body


def test_psycopg_pipelines_flush_after_sync_makes_no_phantom_call():
    """libpq's pipeline mode sends Sync then Flush ('H'); the Flush gets no answer."""
    ((flow, chunks),) = flows_in(GOLDEN / "pipeline.pcap")
    facts = json.loads((GOLDEN / "pipeline.client.json").read_text())
    flushes = [data for d, data, _, _ in chunks if d == C and data[:1] == b"H"]
    assert flushes, "the capture should hold a Flush after a Sync"
    events = replay(POSTGRESQL, flow, chunks)
    assert failures_of(events) == []
    calls = calls_of(events)
    assert [c.method for c in calls] == ["startup"] + ["execute"] * len(facts)
    for call, fact in zip(calls[1:], facts, strict=True):
        assert call.path == dollar_params(fact["sql"]) and call.flags == ()
        assert json.loads(call.request_body) == [str(p) for p in fact["params"]]
        assert json.loads(call.response_body)["rows"] == [list(map(str, r)) for r in fact["rows"]]
    first_pipeline, second_pipeline = calls[1:3], calls[3:5]
    # The second pipeline's calls begin with their own Parse, after the first's answers.
    assert min(c.ts_ns for c in second_pipeline) > max(c.response_end_ns for c in first_pipeline)


# ------------------------------------------------------------- hand-made bytes


def msg(kind: str, payload: bytes = b"") -> bytes:
    return kind.encode() + struct.pack("!i", len(payload) + 4) + payload


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def startup(**params: str) -> bytes:
    body = struct.pack("!i", 196608) + b"".join(cstr(k) + cstr(v) for k, v in params.items())
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


READY = msg("Z", b"I")
FLOW = Flow("tcp:10.0.0.1:40000-10.0.0.2:5432", "10.0.0.1", 40000, "10.0.0.2", 5432)


def run(*steps, make=POSTGRESQL) -> list:
    return replay(make, FLOW, dialog_chunks(steps))


def test_cleartext_and_md5_passwords_are_never_recorded():
    for auth in (3, 5):
        events = run(
            (C, startup(user="bob", database="shop")),
            (S, msg("R", struct.pack("!i", auth) + (b"salt" if auth == 5 else b""))),
            (C, msg("p", cstr("hunter2-password"))),
            (S, msg("R", struct.pack("!i", 0)) + READY),
        )
        (call,) = calls_of(events)
        assert call.method == "startup" and call.path == "shop" and call.status == 0
        assert header(call, "mechanism") == {3: "password", 5: "md5"}[auth]
        assert "hunter2" not in repr(call)


def test_fatal_startup_error():
    events = run(
        (C, startup(user="bob")),
        (S, msg("E", b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0")),
    )
    (call,) = calls_of(events)
    assert (call.path, call.status, call.reason) == (
        "bob",
        1,
        "28P01 password authentication failed",
    )


def extended(sql: str, *params: str, stmt: str = "", sync: bool = True) -> bytes:
    values = b"".join(struct.pack("!i", len(p)) + p.encode() for p in params)
    out = msg("P", cstr(stmt) + cstr(sql) + b"\0\0")
    out += msg(
        "B", cstr("") + cstr(stmt) + b"\0\0" + struct.pack("!h", len(params)) + values + b"\0\0"
    )
    out += msg("D", b"P\0") + msg("E", b"\0\0\0\0\0")
    return out + (msg("S") if sync else b"")


def test_pipelined_executes_after_an_error_are_marked_skipped():
    error = msg("E", b"SERROR\0C22P02\0Minvalid input syntax for type integer\0\0")
    events = run(
        (C, extended("SELECT $1::int", "x", sync=False) + extended("SELECT 2")),
        (S, msg("1") + msg("2") + error + READY),
    )
    first, second = calls_of(events)
    assert (first.method, first.path, first.status) == ("execute", "SELECT $1::int", 1)
    assert json.loads(first.request_body) == ["x"]
    assert first.reason.startswith("22P02 ") and "skipped" not in first.flags
    assert (second.path, second.status, second.flags) == ("SELECT 2", 1, ("skipped",))


def test_flush_inside_or_after_a_batch_asks_for_nothing():
    flush = msg("H")
    rows = msg("1") + msg("2") + msg("n") + msg("C", cstr("SELECT 0")) + READY
    events = run(
        (C, extended("SELECT 1", sync=False) + flush),
        (C, msg("S") + flush),
        (S, rows),
        (C, flush),
        (C, extended("SELECT 2") + flush),
        (S, rows),
    )
    first, second = calls_of(events)
    assert (first.path, first.ts_ns, first.flags) == ("SELECT 1", 1000, ())
    assert (second.path, second.ts_ns, second.flags) == ("SELECT 2", 5000, ())


def test_ssl_accepted_makes_the_flow_opaque():
    ssl = struct.pack("!ii", 8, 80877103)
    events = run((C, ssl), (S, b"S"), (C, b"\x16\x03\x01\x02\x00junk"), (S, b"\x16\x03\x03"))
    (call,) = calls_of(events)
    assert call.method == "sslrequest" and header(call, "answer") == "S"


def test_capture_starting_after_the_startup():
    row = msg("T", b"\0\x01" + cstr("n") + b"\0" * 6 + struct.pack("!ih", 23, 4) + b"\0" * 6)
    data = msg("D", b"\0\x01" + struct.pack("!i", 1) + b"7")
    events = run(
        (C, msg("Q", cstr("SELECT 7 AS n"))), (S, row + data + msg("C", cstr("SELECT 1")) + READY)
    )
    (call,) = calls_of(events)
    assert json.loads(call.response_body) == {"columns": ["n"], "rows": [["7"]]}
    assert POSTGRESQL.probe(msg("Q", cstr("SELECT 7 AS n"))) >= 0.5


def test_lost_bytes_flag_pending_calls_and_stop_dissection():
    d = POSTGRESQL(FLOW)
    d.receive(C, msg("Q", cstr("SELECT 1")), 1, 1)
    events = d.gap(S, 100, 2) + d.receive(C, msg("Q", cstr("SELECT 2")), 3, 15)
    (failed,) = [e for e in events if isinstance(e, DissectFailed)]
    (call,) = calls_of(events)
    assert call.path == "SELECT 1" and "gap" in call.flags and "no_response" in call.flags
    assert d.idle and "lost" in failed.reason


def test_huge_row_is_cut_without_buffering_it():
    d = PostgresDissector(FLOW, max_frame=1024)
    d.receive(C, msg("Q", cstr("SELECT big")), 1, 1)
    head = msg("T", b"\0\x01" + cstr("b") + b"\0" * 6 + struct.pack("!ih", 25, -1) + b"\0" * 6)
    size = 10_000_000
    big = b"D" + struct.pack("!i", size + 10) + b"\0\x01" + struct.pack("!i", size)
    d.receive(S, head + big, 2, 1)
    seq = 1 + len(head + big)
    chunk = b"x" * 65536
    for _ in range(size // len(chunk)):
        d.receive(S, chunk, 3, seq)
        seq += len(chunk)
        assert d.buffered <= 1024 + 5 + 64
    tail = b"x" * (size % len(chunk)) + msg("C", cstr("SELECT 1")) + READY
    (call,) = calls_of(d.receive(S, tail, 4, seq))
    assert "response_truncated" in call.flags and header(call, "rows") == "1"


def test_probe():
    assert POSTGRESQL.probe(startup(user="a")) == 1.0
    assert POSTGRESQL.probe(struct.pack("!ii", 8, 80877103)) == 1.0
    assert POSTGRESQL.probe(b"GET / HTTP/1.1\r\n") == 0.0
    assert POSTGRESQL.probe(b"\x16\x03\x01\x02\x00") == 0.0
    assert POSTGRESQL.probe(b"") == 0.0


# ----------------------------------------------------------------- properties
# Framing, gaps, close and fuzz over the golden capture: tests/streams/test_dissector_contract.py


@settings(max_examples=300, deadline=None)
@given(junk=JUNK_STEPS)
def test_junk_keeps_the_buffers_under_the_cap(junk):
    d = PostgresDissector(FLOW, max_frame=256)
    assert_capped(d, [(C, startup(user="u")), *junk], 256 + 5 + 4096)
