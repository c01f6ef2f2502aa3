"""HTTP/1.x dissector: real traffic recorded through a proxy, golden files, edge cases and
Hypothesis properties (a fully pipelining client's order gives the same calls; junk never
breaks it). Framing, gaps, close and fuzz over the recordings: test_dissector_contract.py."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import ApiCall, flow_id
from streams.dissect.base import DissectFailed, call_id
from streams.dissect.http import HTTP1, Http1Dissector, Http1Factory
from streams.dissect.http_semantics import split_target
from streams.reassembly.events import Direction, Flow
from tests.conftest import _free_port_pair
from tests.streams import dissect_kit as kit
from tests.streams.dissect_kit import calls_of, failures_of, spans

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "http"


def _load_recorder():
    spec = importlib.util.spec_from_file_location("wiretide_http_record", GOLDEN_DIR / "record.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


R = _load_recorder()
C, S = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def summary(calls: list[ApiCall]) -> list[tuple[str, str, int]]:
    return [(c.method, c.path, c.status) for c in calls]


def header(headers, name: str) -> str | None:
    return kit.header(headers, name, any_case=True)


def request_starts(rec) -> list[int]:
    """Sequence numbers of every request line in the recorded client stream."""
    stream = rec.stream(0)
    return [
        (rec.isn[0] + m.start()) & 0xFFFFFFFF
        for m in re.finditer(rb"(?:GET|HEAD|POST|PUT|CONNECT) [^ ]+ HTTP/1\.[01]\r\n", stream)
    ]


def segment_ts(rec, direction: int, seq: int) -> int:
    for d, ts, s, data in rec.events:
        if d == direction and 0 <= (seq - s) & 0xFFFFFFFF < len(data):
            return ts
    raise AssertionError(f"no segment holds seq {seq}")


def check_timings_and_ids(rec, calls: list[ApiCall]) -> None:
    """ts_ns is the capture time of the request's first byte and call_id hashes its seq."""
    starts = request_starts(rec)
    assert len(starts) >= len(calls)
    for call, seq in zip(calls, starts, strict=False):
        assert call.ts_ns == segment_ts(rec, 0, seq)
        assert call.call_id == call_id(rec.flow.flow_id, seq, call.ts_ns)
        assert call.ts_ns <= call.request_end_ns
        if call.response_ts_ns:
            assert call.ts_ns <= call.response_ts_ns <= call.response_end_ns
    assert len({c.call_id for c in calls}) == len(calls)


# ------------------------------------------------------------- real traffic


@pytest.fixture(scope="module")
def recorded():
    return R.record_all()


def test_keepalive_stdlib_client(recorded):
    (rec,) = recorded["keepalive"]
    events = R.feed(rec)
    assert failures_of(events) == []
    calls = calls_of(events)
    assert summary(calls) == [
        ("GET", "/json", 200),
        ("GET", "/json", 200),
        ("HEAD", "/json", 200),
        ("POST", "/echo", 200),
        ("PUT", "/upload", 201),
        ("GET", "/chunked", 200),
        ("GET", "/chunked-gzip", 200),
        ("GET", "/br", 200),
        ("GET", "/deflate", 200),
        ("GET", "/raw-deflate", 200),
        ("GET", "/204", 204),
        ("GET", "/etag", 200),
        ("GET", "/etag", 304),
        ("GET", "/big", 200),
        ("POST", "/continue", 200),
        ("GET", "/upgrade-refused", 200),
        ("GET", "/missing", 404),
    ]
    check_timings_and_ids(rec, calls)
    doc = json.dumps(R.JSON_DOC).encode()
    gz, plain, head, post, put, chunked, chunked_gz, br, deflate, raw_deflate = calls[:10]
    assert gz.query == "user=alice&limit=10"
    assert gz.response_body == doc
    assert gz.response_body_size == len(gzip.compress(doc, mtime=0))
    assert header(gz.response_headers, "content-encoding") == "gzip"
    assert ("Authorization", "Bearer abc") in gz.request_headers  # original case and order
    assert gz.request_version == gz.response_version == "HTTP/1.1"
    assert gz.reason == "OK"
    assert plain.response_body == doc and plain.response_body_size == len(doc)
    assert head.response_body == b"" and head.response_body_size == 0
    assert int(header(head.response_headers, "content-length")) > 0
    assert json.loads(post.request_body) == {"password": "hunter2", "n": 1}
    assert post.response_body == post.request_body
    assert put.request_body == b"part one, part two"
    assert put.request_body_size > len(put.request_body)  # chunk framing is on the wire
    assert header(put.request_headers, "transfer-encoding") == "chunked"
    assert chunked.response_body == R.TEXT
    assert chunked.response_headers[-1] == ("X-Checksum", "abc123")  # trailer appended
    assert chunked_gz.response_body == R.TEXT
    for c in (br, deflate, raw_deflate):
        assert c.response_body == R.TEXT, c.path
        assert c.response_body_size < len(R.TEXT)
    no_content, etag, not_modified, big, cont, refused, missing = calls[10:]
    assert no_content.response_body == b"" and not_modified.response_body == b""
    assert etag.response_body == b"versioned"
    assert big.flags == ("response_truncated",)
    assert big.response_body == R.BIG[: 64 * 1024]
    assert big.response_body_size == len(R.BIG)
    assert cont.request_body == b"x" * 3000 and cont.status == 200
    assert refused.response_body == b"plain /upgrade-refused" and refused.flags == ()
    assert missing.response_body == b"not found"
    assert all(c.src_port == rec.client[1] and c.dst_port == rec.server[1] for c in calls)
    assert all(c.protocol == "http" and not c.tls for c in calls)


def test_pipelined_requests_pair_fifo(recorded):
    (rec,) = recorded["pipelined"]
    events = R.feed(rec)
    assert failures_of(events) == []
    calls = calls_of(events)
    assert summary(calls) == [
        ("GET", "/json", 200),
        ("HEAD", "/text", 200),
        ("POST", "/echo", 200),
        ("GET", "/chunked", 200),
    ]
    check_timings_and_ids(rec, calls)
    assert len({c.ts_ns for c in calls}) == 1  # one segment carried all four requests
    assert calls[0].query == "q=1"
    assert calls[1].response_body == b""
    assert calls[2].request_body == b"hello world" == calls[2].response_body
    assert calls[3].response_body == R.TEXT


def test_body_delimited_by_close(recorded):
    (rec,) = recorded["close_delimited"]
    events = R.feed(rec)
    assert failures_of(events) == []
    (call,) = calls_of(events)
    assert (call.method, call.path, call.status) == ("GET", "/close", 200)
    assert header(call.response_headers, "content-length") is None
    assert call.response_body == R.TEXT and call.response_body_size == len(R.TEXT)
    last_server_ts = max(ts for d, ts, _, _ in rec.events if d == 1)
    assert call.response_end_ns == last_server_ts
    assert header(call.request_headers, "connection") == "close"


def test_upgrade_stops_dissection(recorded):
    (rec,) = recorded["upgrade"]
    events = R.feed(rec)
    assert failures_of(events) == []  # the WebSocket frames after the 101 are not parsed
    (call,) = calls_of(events)
    assert (call.method, call.path, call.status) == ("GET", "/upgrade", 101)
    assert call.flags == ("upgrade",)


def test_connect_tunnel_stops_dissection(recorded):
    (rec,) = recorded["connect"]
    events = R.feed(rec)
    assert failures_of(events) == []
    (call,) = calls_of(events)
    assert (call.method, call.path, call.status) == ("CONNECT", "api.example.test:443", 200)
    assert call.reason == "Connection established"
    assert call.flags == ("upgrade",)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl(recorded):
    recs = recorded["curl"]
    per_conn = []
    for rec in recs:
        events = R.feed(rec)
        assert failures_of(events) == []
        per_conn.append(calls_of(events))
        check_timings_and_ids(rec, per_conn[-1])
    assert [summary(c) for c in per_conn] == [
        [("GET", "/json", 200), ("GET", "/br", 200), ("GET", "/chunked", 200)],
        [("HEAD", "/text", 200)],
        [("PUT", "/put", 201)],
        [("POST", "/post", 200)],
    ]
    reuse, (head,), (put,), (post,) = per_conn
    assert reuse[0].response_body == json.dumps(R.JSON_DOC).encode()
    assert reuse[1].response_body == R.TEXT and reuse[2].response_body == R.TEXT
    assert head.response_body == b""
    assert put.request_body == b"streamed upload " * 50
    assert header(put.request_headers, "transfer-encoding") == "chunked"
    assert header(post.request_headers, "expect") == "100-continue"
    assert json.loads(post.request_body)["username"] == "bob"
    assert post.request_end_ns < post.response_ts_ns


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_gzip_chunked():
    server = R.Nginx()
    try:
        recs = R.record(server, R.client_nginx)
    finally:
        server.close()
    per_conn = [R.feed(rec) for rec in recs]
    assert all(failures_of(e) == [] for e in per_conn)
    calls = [calls_of(e) for e in per_conn]
    assert [summary(c) for c in calls] == [
        [
            ("GET", "/index.html", 200),
            ("GET", "/data.json", 200),
            ("GET", "/blob.bin", 200),
            ("GET", "/nope", 404),
        ],
        [("HEAD", "/data.json", 200)],
    ]
    index, data, blob, _ = calls[0]
    assert index.response_body == b"<html><body>" + R.TEXT + b"</body></html>"
    assert json.loads(data.response_body) == {"users": [R.JSON_DOC] * 30}
    assert header(data.response_headers, "content-encoding") == "gzip"
    assert data.response_body_size < len(data.response_body)
    assert blob.response_body == R.BIG[:5000]
    assert calls[1][0].response_body == b""


# ------------------------------------------------------------------ golden


GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))


def load_golden(path: Path) -> list[tuple]:
    doc = json.loads(path.read_text())
    return [(R.Recording.from_json(c), c["calls"], c["failures"]) for c in doc["connections"]]


GOLDEN_RECS = [rec for p in GOLDEN_FILES for rec, _, _ in load_golden(p)]


def test_golden_files_exist():
    assert {p.stem for p in GOLDEN_FILES} >= set(R.GOLDEN)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden(path):
    for rec, calls, failures in load_golden(path):
        events = R.feed(rec)
        assert [R.call_to_json(c) for c in calls_of(events)] == calls
        assert [f.reason for f in failures_of(events)] == failures


@pytest.mark.parametrize("rec", GOLDEN_RECS, ids=lambda r: str(r.client[1]))
def test_capture_with_roles_backwards_gives_the_same_calls(rec):
    """Capture started mid-connection and guessed the client wrong: calls are unchanged."""
    backwards = R.Recording(rec.server, rec.client, (rec.isn[1], rec.isn[0]))
    backwards.events = [(1 - d, ts, seq, data) for d, ts, seq, data in rec.events]
    backwards.close_ts = rec.close_ts
    assert backwards.flow.client_port == rec.server[1]
    assert R.feed(backwards) == R.feed(rec)


# ----------------------------------------------------- Hypothesis: any cut
# Split, joined and interleaved segments of every recording: test_dissector_contract.py


def recut(rec, data) -> list[tuple[int, int, int, bytes]]:
    """Every segment of a recording split anywhere; pieces keep their segment's time."""
    out = []
    for d, ts, seq, payload in rec.events:
        for a, b in spans(data.draw, len(payload), 6):
            out.append((d, ts, (seq + a) & 0xFFFFFFFF, payload[a:b]))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=st.sampled_from(GOLDEN_RECS), data=st.data())
def test_all_requests_before_any_response_gives_the_same_calls(rec, data):
    """Another order the capture could show (a fully pipelining client)."""
    events = recut(rec, data)
    reordered = [e for e in events if e[0] == 0] + [e for e in events if e[0] == 1]
    assert R.feed(rec, events=reordered) == R.feed(rec)


# -------------------------------------------- Hypothesis: junk never breaks it

SMALL = Http1Factory(max_body=512, max_header=2048, max_pending=4)


def bound(f: Http1Factory) -> int:
    return 2 * (f.max_header + f.max_body) + (f.max_pending + 4) * 2 * f.max_body


def assert_sane(events: list) -> None:
    for e in events:
        if isinstance(e, DissectFailed):
            assert not e.reason.startswith("internal"), e.reason
        else:
            assert isinstance(e, ApiCall)
            assert isinstance(e.call_id, str) and len(e.call_id) == 32


FRAGMENTS = [
    b"GET / HTTP/1.1\r\n",
    b"POST /p?a=1 HTTP/1.1\r\n",
    b"HEAD /h HTTP/1.0\r\n",
    b"CONNECT h:443 HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 101 Switching\r\n",
    b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 204 No\r\n",
    b"HTTP/1.0 500 E\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: x\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Encoding: gzip\r\n",
    b"Content-Encoding: br\r\n",
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
    b"Connection: close\r\n",
    b"X-A: b\r\n",
    b"\r\n",
    b"\r\n\r\n",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"0\r\nT: 1\r\n\r\n",
    b"ffff\r\n",
    b"hello",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x1f\x8b\x08\x00",
    b"\x00\xff",
    b"\n",
]
chunks = st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=200))
steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([0, 1]), st.lists(chunks, min_size=1, max_size=8).map(b"".join)),
        st.tuples(st.just(2), st.sampled_from([0, 1]), st.integers(1, 5000)),
    ),
    max_size=30,
)


def run_steps(factory: Http1Factory, program, seq0=(0, 2**32 - 7)) -> tuple[list, Http1Dissector]:
    d = factory(FLOW)
    seqs = list(seq0)
    out: list = []
    for ts, step in enumerate(program, 1):
        if step[0] == 2:
            _, direction, size = step
            out += d.gap(Direction(direction), size, ts)
            seqs[direction] = (seqs[direction] + size) & 0xFFFFFFFF
        else:
            direction, payload = step
            out += d.receive(Direction(direction), payload, ts, seqs[direction])
            seqs[direction] = (seqs[direction] + len(payload)) & 0xFFFFFFFF
        assert d.buffered <= bound(factory)
    out += d.close(len(program) + 1)
    assert d.idle
    return out, d


@settings(max_examples=400, deadline=None)
@given(program=steps)
def test_http_like_junk_never_breaks_it(program):
    out, _ = run_steps(SMALL, program)
    assert_sane(out)
    out, _ = run_steps(HTTP1, program)
    assert_sane(out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=st.sampled_from(GOLDEN_RECS), data=st.data())
def test_cut_or_damaged_recordings_never_break_it(rec, data):
    events = recut(rec, data)
    keep = data.draw(st.integers(0, len(events)))
    events = events[:keep]
    flips = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, max(0, len(events) - 1)), st.integers(0, 10**6), st.integers(0, 255)
            ),
            max_size=5,
        )
    )
    for k, pos, byte in flips:
        if events:
            d, ts, seq, payload = events[k]
            if payload:
                pos %= len(payload)
                events[k] = (d, ts, seq, payload[:pos] + bytes([byte]) + payload[pos + 1 :])

    def check(dissector):
        assert dissector.buffered <= bound(SMALL)

    assert_sane(R.feed(rec, SMALL, events=events, check=check))
    assert_sane(R.feed(rec, events=events))


# --------------------------------------------------------------- edge cases

FLOW = Flow(flow_id("10.0.0.1", 40000, "10.0.0.2", 80), "10.0.0.1", 40000, "10.0.0.2", 80)


def run(*steps, factory: Http1Factory = HTTP1, close: bool = True):
    """Steps: ("c", bytes) / ("s", bytes) data, ("gc", n) / ("gs", n) gaps; ts = step no."""
    d = factory(FLOW)
    seqs = [1000, 9000]
    out: list = []
    for ts, (kind, arg) in enumerate(steps, 1):
        direction = C if kind[-1] == "c" else S
        if kind.startswith("g"):
            out += d.gap(direction, arg, ts)
            seqs[direction] += arg
        else:
            out += d.receive(direction, arg, ts, seqs[direction])
            seqs[direction] += len(arg)
    if close:
        out += d.close(len(steps) + 1)
    return out, d


GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_roles_swapped_when_capture_guessed_wrong():
    out, _ = run(("s", GET), ("c", OK))
    (call,) = calls_of(out)
    assert (call.src_ip, call.src_port, call.dst_ip, call.dst_port) == (
        "10.0.0.2",
        80,
        "10.0.0.1",
        40000,
    )
    assert call.response_body == b"ok" and call.ts_ns == 1 and call.response_ts_ns == 2
    assert call.call_id == call_id(FLOW.flow_id, 9000, 1)


def test_capture_starting_mid_message_resyncs():
    out, _ = run(("c", b"tail of a body\r\n" + GET), ("s", b"dy\r\n\r\n" + OK))
    assert len(failures_of(out)) == 2
    (call,) = calls_of(out)
    assert (call.path, call.status, call.flags) == ("/a", 200, ())
    assert call.call_id == call_id(FLOW.flow_id, 1000 + 16, 1)


def test_start_line_split_across_segments_keeps_first_segment_time():
    out, _ = run(("c", b"GE"), ("c", b"T /a HTTP/1.1\r\n\r\n"), ("s", OK))
    (call,) = calls_of(out)
    assert failures_of(out) == []
    assert call.ts_ns == 1 and call.request_end_ns == 2
    assert call.call_id == call_id(FLOW.flow_id, 1000, 1)


def test_malformed_message_then_resync():
    out, _ = run(
        ("c", b"GET /a HTTP/1.1\r\nBad Header\r\n\r\n"),
        ("c", b"GET /b HTTP/1.1\r\n\r\n"),
        ("s", OK),
    )
    (failure,) = failures_of(out)
    assert failure.protocol == "http" and failure.direction == C
    assert "malformed" in failure.reason
    assert summary(calls_of(out)) == [("GET", "/b", 200)]


def test_header_cap():
    f = Http1Factory(max_header=1024)
    d = f(FLOW)
    out = d.receive(C, b"GET / HTTP/1.1\r\n", 1, 0)
    for k in range(20):
        out += d.receive(C, b"X-Filler: " + b"a" * 200 + b"\r\n", 2 + k, 0)
        assert d.buffered <= 1024
    assert any("exceeds 1024" in f.reason for f in failures_of(out))


def test_not_http_becomes_opaque():
    d = HTTP1(FLOW)
    out = []
    junk = bytes(range(256)) * 40
    for k in range(20):
        out += d.receive(C, junk, k, k * len(junk))
    assert d.opaque and d.idle
    assert len(failures_of(out)) == 2  # "skipping", then "giving up"
    assert d.buffered == 0


def test_http2_preface_is_opaque():
    out, d = run(("c", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), close=False)
    assert d.opaque and "HTTP/2" in failures_of(out)[0].reason


def test_gap_inside_content_length_body_keeps_the_call():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    out, _ = run(
        ("c", GET), ("s", head + b"a" * 40), ("gs", 30), ("s", b"b" * 30), ("c", GET), ("s", OK)
    )
    first, second = calls_of(out)
    assert first.flags == ("gap",) and first.response_body == b"a" * 40
    assert first.response_body_size == 100 and first.response_end_ns == 4
    assert second.response_body == b"ok" and second.flags == ()


def test_lost_response_is_not_paired_with_the_next_request():
    out, _ = run(("c", GET), ("gs", len(OK)), ("c", b"GET /b HTTP/1.1\r\n\r\n"), ("s", OK))
    first, second = calls_of(out)
    assert (first.path, first.flags) == ("/a", ("gap", "no_response"))
    assert (second.path, second.status, second.flags) == ("/b", 200, ())


def test_lost_request_leaves_an_unpaired_response():
    out, _ = run(("gc", len(GET)), ("s", OK), ("c", b"GET /b HTTP/1.1\r\n\r\n"), ("s", OK))
    orphan, call = calls_of(out)
    assert orphan.flags == ("no_request",) and orphan.status == 200 and orphan.method == ""
    assert (call.path, call.status) == ("/b", 200)


def test_close_flags_pending_and_cut_messages():
    out, _ = run(("c", GET + b"GET /b HTTP/1.1\r\n\r\n"), ("s", OK))
    assert [c.flags for c in calls_of(out)] == [(), ("no_response",)]
    out, _ = run(("c", GET), ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    (call,) = calls_of(out)
    assert call.flags == ("response_incomplete",) and call.response_body == b"abc"
    out, _ = run(("c", b"GET /x HTTP/1.1\r\nHo"))
    assert calls_of(out) == [] and len(failures_of(out)) == 1


def test_interim_responses_are_skipped():
    out, _ = run(
        ("c", b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
        ("s", b"HTTP/1.1 100 Continue\r\n\r\n"),
        ("c", b"abc"),
        ("s", b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK),
    )
    (call,) = calls_of(out)
    assert (call.status, call.request_body, call.response_body) == (200, b"abc", b"ok")
    assert call.response_ts_ns == 4 and call.request_end_ns == 3


def test_head_response_with_chunked_header_has_no_body():
    out, _ = run(
        ("c", b"HEAD /h HTTP/1.1\r\n\r\n" + GET),
        ("s", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + OK),
    )
    assert [(c.method, c.response_body) for c in calls_of(out)] == [("HEAD", b""), ("GET", b"ok")]
    assert failures_of(out) == []


def test_refused_upgrade_and_connect_keep_parsing():
    out, _ = run(
        ("c", b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + GET),
        ("s", OK + OK),
        ("c", b"CONNECT h:443 HTTP/1.1\r\n\r\n"),
        ("s", b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n"),
        ("c", GET),
        ("s", OK),
    )
    assert summary(calls_of(out)) == [
        ("GET", "/ws", 200),
        ("GET", "/a", 200),
        ("CONNECT", "h:443", 407),
        ("GET", "/a", 200),
    ]
    assert failures_of(out) == []


def test_bad_and_huge_encodings():
    bomb = gzip.compress(b"\0" * 10_000_000)
    out, _ = run(
        ("c", GET + GET),
        ("s", b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnope!"),
        (
            "s",
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
            + bomb,
        ),
    )
    bad, huge = calls_of(out)
    assert bad.flags == ("decode_error",)
    assert huge.flags == ("response_truncated",) and huge.response_body == b"\0" * 65536
    assert huge.response_body_size == len(bomb)


def test_deflate_and_identity_chunks_across_segments():
    body = zlib.compress(b"hello deflate")
    resp = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    out, _ = run(("c", GET), *[("s", resp[k : k + 3]) for k in range(0, len(resp), 3)])
    (call,) = calls_of(out)
    assert call.response_body == b"hello deflate" and call.response_end_ns == 1 + len(
        range(0, len(resp), 3)
    )


def test_targets_and_odd_headers():
    assert split_target(b"http://example.com:8080/a/b?x=1#frag") == ("/a/b", "x=1")
    assert split_target(b"http://example.com") == ("/", "")
    assert split_target(b"/p?") == ("/p", "")
    assert split_target(b"*") == ("*", "")
    out, _ = run(
        ("c", b"GET /caf%C3%A9?q=%FF HTTP/1.0\r\nX-Bin: \xe9t\xe9\r\n\r\n"),
        ("s", b"HTTP/1.0 200 Fine\r\n\r\nbody until close"),
    )
    (call,) = calls_of(out)
    assert call.path == "/caf%C3%A9" and call.query == "q=%FF"  # as on the wire
    assert call.request_headers == (("X-Bin", "été"),)
    assert call.request_version == "HTTP/1.0" and call.response_body == b"body until close"


def test_sequence_numbers_wrap():
    d = HTTP1(FLOW)
    start = 2**32 - 10
    out = d.receive(C, GET + GET, 5, start)
    out += d.receive(S, OK + OK, 6, 0)
    a, b = calls_of(out)
    assert a.call_id == call_id(FLOW.flow_id, start, 5)
    assert b.call_id == call_id(FLOW.flow_id, (start + len(GET)) % 2**32, 5)


def test_call_ids_are_stable_across_runs():
    steps = (("c", GET), ("s", OK), ("c", GET), ("s", OK))
    first = [c.call_id for c in calls_of(run(*steps)[0])]
    assert first == [c.call_id for c in calls_of(run(*steps)[0])]
    assert len(set(first)) == 2


def test_idle():
    d = HTTP1(FLOW)
    assert d.idle
    d.receive(C, b"GET /a HTTP/1.1\r\n", 1, 0)
    assert not d.idle  # partial head
    d.receive(C, b"\r\n", 2, 17)
    assert not d.idle  # waiting for the response
    d.receive(S, OK[:20], 3, 0)
    assert not d.idle
    out = d.receive(S, OK[20:], 4, 20)
    assert len(calls_of(out)) == 1 and d.idle


def test_pending_requests_are_capped():
    d = Http1Factory(max_pending=2)(FLOW)
    out = []
    for k in range(5):
        out += d.receive(C, GET, k, k * len(GET))
    assert [c.flags for c in calls_of(out)] == [("no_response",)] * 3
    out = d.receive(S, OK * 5, 9, 0)
    assert [c.flags for c in calls_of(out)] == [("no_request",)] * 3 + [()] * 2


def test_probe():
    p = HTTP1.probe
    assert p(b"GET /x HTTP/1.1\r\nHost: a\r\n") == 1.0
    assert p(b"\r\nHTTP/1.0 404 Not Found\r\n") == 1.0
    assert p(b"BREW /pot HTTP/1.1\r\n") == 0.6
    assert 0 < p(b"POST /very/long/path") < 1
    assert 0 < p(b"HTTP/1.1 2") < 1
    assert 0 < p(b"GE") < 0.5 and 0 < p(b"HT") < 0.5
    assert p(b"\x16\x03\x01\x02\x00") == 0.0
    assert p(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == 0.0
    assert p(b"") == 0.0
    assert HTTP1.protocol == "http" and 80 in HTTP1.ports and 8081 in HTTP1.ports


# ------------------------------------------- protocol switch: hand-off after 101

H2C_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = ('{"path": "%s", "version": "%s"}' % (scope["path"], scope["http_version"])).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""


def _wait_port(port: int) -> None:
    import socket
    import time

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def _idle_trace(rec) -> tuple[list, list[bool]]:
    trace: list[bool] = []
    events = R.feed(rec, check=lambda d: trace.append(d.idle))
    return events, trace


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_h2c_upgrade_is_handed_to_the_http2_dissector(tmp_path):
    """curl --http2 on http:// asks for `Upgrade: h2c`; hypercorn switches. Stream 1 answers
    the upgraded request, the second URL goes on stream 3: both become http2 calls."""
    import subprocess

    pytest.importorskip("hypercorn")
    pytest.importorskip("streams.dissect.http2")
    (tmp_path / "h2c_app.py").write_text(H2C_APP)
    port = _free_port_pair()  # a fixed port fails when another test run holds it
    server = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "h2c_app:app", "--bind", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    proxy = None
    try:
        _wait_port(port)
        proxy = R.RecordingProxy(("127.0.0.1", port))
        url = f"http://127.0.0.1:{proxy.port}"
        out = subprocess.run(
            ["curl", "-s", "--http2", f"{url}/first", f"{url}/second"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        (rec,) = proxy.wait_closed()
    finally:
        if proxy is not None:
            proxy.close()
        server.terminate()
        server.wait()
    assert '"version": "2"' in out.stdout  # curl really switched
    assert b"Upgrade: h2c" in rec.stream(0) and b" 101 " in rec.stream(1)
    events, idle = _idle_trace(rec)
    assert not any(f.reason.startswith("internal") for f in failures_of(events))
    calls = calls_of(events)
    assert [(c.protocol, c.method, c.path, c.status) for c in calls] == [
        ("http2", "GET", "/first", 200),
        ("http2", "GET", "/second", 200),
    ]
    first = calls[0]
    assert "h2c_upgrade" in first.flags
    assert first.call_id == call_id(rec.flow.flow_id, rec.isn[0], rec.events[0][1])
    assert json.loads(calls[1].response_body) == {"path": "/second", "version": "2"}
    assert idle[-1] and not all(idle)


def test_websocket_upgrade_through_a_real_server_and_client():
    """A `websockets` client and server: the 101 call, then the messages as websocket calls."""
    import asyncio
    import threading

    pytest.importorskip("websockets")
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    port = _free_port_pair()
    ready = threading.Event()
    stop: list = []

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def server_main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        stop.append((loop, done))
        async with serve(echo, "127.0.0.1", port):
            ready.set()
            await done

    thread = threading.Thread(target=lambda: asyncio.run(server_main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    proxy = R.RecordingProxy(("127.0.0.1", port))

    async def client():
        async with connect(f"ws://127.0.0.1:{proxy.port}/echo?v=1") as ws:
            await ws.send("hi there")
            assert await ws.recv() == "hi there"
            await ws.send(b"\x01\x02")
            assert await ws.recv() == b"\x01\x02"

    try:
        asyncio.run(client())
        (rec,) = proxy.wait_closed()
    finally:
        proxy.close()
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set_result, None)
        thread.join(10)
    events, idle = _idle_trace(rec)
    assert failures_of(events) == []
    calls = calls_of(events)
    summary_ = [(c.protocol, c.method, c.path, c.query) for c in calls]
    assert summary_ == [("http", "GET", "/echo", "v=1")] + [
        ("websocket", "text", "/echo", "v=1")
    ] * 2 + [("websocket", "binary", "/echo", "v=1")] * 2 + [("websocket", "close", "/echo", "v=1")]
    assert [c.request_body or c.response_body for c in calls[1:5]] == [
        b"hi there", b"hi there", b"\x01\x02", b"\x01\x02",
    ]  # fmt: skip
    assert calls[-1].status == 1000 and idle[-1]


# ------------------------------------------------------- lenient like real servers

LENIENT_PCAP = GOLDEN_DIR / "lenient.pcap"  # recorded by lenient_record.py against nginx


def lenient_calls() -> tuple[list[ApiCall], list[DissectFailed]]:
    calls, failures = [], []
    for flow, chunks in kit.flows_in(LENIENT_PCAP):
        events = kit.replay(HTTP1, flow, chunks)
        calls += calls_of(events)
        failures += failures_of(events)
    return sorted(calls, key=lambda c: c.ts_ns), failures


def test_heads_nginx_serves_are_calls_flagged_not_dropped():
    calls, failures = lenient_calls()
    assert failures == []
    assert [(c.method, c.path, c.status, c.flags) for c in calls] == [
        ("GET", "/café/über", 200, ("lenient_target",)),
        ("GET", "/paren", 200, ("lenient_header_name",)),
        ("GET", "/bare-lf", 200, ("lenient_line_ending",)),
        ("GET", "/folded", 400, ("lenient_header_value",)),  # nginx refuses obs-fold
        ("POST", "/ctl", 200, ("lenient_header_value",)),
        ("GET", "/utf8-name", 200, ("lenient_header_name",)),
        ("GET", "/v12", 200, ("lenient_version",)),
        ("POST", "/chunked-lf", 200, ("lenient_line_ending",)),
        ("GET", "/a b", 400, ("lenient_target",)),  # nginx refuses a space in the target
        ("GET", "/strict", 200, ()),
    ]
    target, paren, bare, folded, ctl, utf8_name, v12, chunked, _, _ = calls
    assert target.query == "q=ä"
    assert header(paren.request_headers, "x-odd(name)") == "1"
    assert header(bare.request_headers, "x-lf") == "yes"
    assert header(folded.request_headers, "x-fold") == "one two"
    assert header(ctl.request_headers, "x-ctl") == "a\x01b"
    assert ctl.request_body == b"hello" and ctl.response_body == b"served /ctl\n"
    assert header(utf8_name.request_headers, "x-ü") == "1"
    assert v12.request_version == "HTTP/1.2"
    assert chunked.request_body == b"hello world"
    assert chunked.response_body == b"served /chunked-lf\n"


def as_tshark_shows(text: str) -> str:
    """tshark prints each non-ASCII byte of a target or a header name as U+FFFD."""
    return re.sub(r"[^\x00-\x7f]", "\ufffd", text.encode().decode("latin-1"))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_lenient_heads_read_as_tshark_reads_them():
    fields = ["http.request.method", "http.request.uri", "http.request.line"]
    cmd = ["tshark", "-n", "-r", str(LENIENT_PCAP), "-d", "tcp.port==21580,http"]
    cmd += ["-Y", "http.request", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]
    cmd += [arg for f in fields for arg in ("-e", f)]
    rows = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    calls, _ = lenient_calls()
    rows = [row.split("|") for row in rows.splitlines()]
    assert len(rows) == len(calls)
    for call, (method, uri, lines) in zip(calls, rows, strict=True):
        assert method == call.method
        target = call.path + ("?" + call.query if call.query else "")
        assert uri == as_tshark_shows(target).split(" ")[0]  # tshark ends it at a space
        names = [line.split(":", 1)[0] for line in lines.split(",")]
        ours = [as_tshark_shows(name) for name, _ in call.request_headers]
        assert names == ours[: len(names)]  # tshark stops at an obs-fold line


def test_lenient_response_heads_and_resync_on_bare_lf():
    out, _ = run(
        ("c", b"GET /a HTTP/1.1\nHost: x\n\n"),
        ("s", b"HTTP/1.1 200 OK\nX Space: 1\nContent-Length: 2\n\nok"),
        ("c", GET),
        ("s", OK),
    )
    assert failures_of(out) == []
    first, second = calls_of(out)
    assert (first.path, first.status, first.response_body) == ("/a", 200, b"ok")
    assert first.flags == ("lenient_line_ending", "lenient_header_name")
    assert header(first.response_headers, "x space") == "1"
    assert (second.path, second.flags) == ("/a", ())


def test_lenient_heads_split_anywhere_give_the_same_calls():
    request = "GET /ü HTTP/1.1\r\nX(y): 1\r\nContent-Length: 3\r\n\r\nabc".encode()
    request += b"POST /c HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n2\nde\n0\n\n"
    whole = calls_of(run(("c", request), ("s", OK + OK))[0])
    assert [(c.path, c.request_body, c.flags) for c in whole] == [
        ("/ü", b"abc", ("lenient_target", "lenient_header_name")),
        ("/c", b"abcde", ("lenient_line_ending",)),
    ]
    for cut in range(1, len(request)):
        parts = calls_of(run(("c", request[:cut]), ("c", request[cut:]), ("s", OK + OK))[0])
        assert [(c.path, c.request_body, c.flags) for c in parts] == [
            (c.path, c.request_body, c.flags) for c in whole
        ]


def test_heads_no_server_would_take_still_fail():
    out, _ = run(("c", b"GET /a HTTP/1.1\r\nno colon here\r\n\r\n" + GET), ("s", OK))
    assert [f.reason for f in failures_of(out)][:1] == ["malformed HTTP: Invalid header token"]
    assert [(c.method, c.path) for c in calls_of(out)] == [("GET", "/a")]


# ------------------------------------------------- heads read from memory


def _feed_three_ways(rec, events=None) -> tuple[list, list, list]:
    """(parsing every head, with a cold memory of heads, with a warm one)."""
    from streams.dissect.http.parser import _KNOWN_HEADS, Http1Parser

    for memo in _KNOWN_HEADS:
        memo.clear()
    learn = Http1Parser._learn
    Http1Parser._learn = lambda self, key: None
    try:
        parsed = R.feed(rec, events=events)
    finally:
        Http1Parser._learn = learn
    return parsed, R.feed(rec, events=events), R.feed(rec, events=events)


def test_heads_read_from_memory_give_what_parsing_them_gives():
    """A head whose exact bytes were read before is taken from memory (parser.KnownHead):
    every golden connection gives the same calls and failures either way."""
    from streams.dissect.http.parser import _KNOWN_HEADS

    remembered = 0
    for rec in GOLDEN_RECS:
        parsed, cold, warm = _feed_three_ways(rec)
        remembered += sum(len(memo) for memo in _KNOWN_HEADS)
        assert cold == parsed
        assert warm == parsed
    assert remembered  # the memory was used


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=st.sampled_from(GOLDEN_RECS), data=st.data())
def test_heads_read_from_memory_whatever_the_cut(rec, data):
    parsed, cold, warm = _feed_three_ways(rec, events=recut(rec, data))
    assert cold == parsed
    assert warm == parsed


def test_whole_messages_from_memory_frame_like_parsed_ones():
    """A message whole in its segment, its head known, is framed in one step
    (Http1Parser._known_message): HEAD and 204/304 answers without their declared body,
    bodies at and past the cap, pipelined and split messages give what parsing gives."""
    from streams.dissect.http.parser import _KNOWN_HEADS, Http1Parser

    post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    head = b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"
    sized = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789"
    steps = [
        ("c", GET), ("s", OK), ("c", post), ("s", OK), ("c", head), ("s", sized),
        ("c", GET + GET), ("s", b"HTTP/1.1 204 No Content\r\n\r\n" + OK),
        ("c", GET), ("s", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
        ("c", post[:-1]), ("c", post[-1:]), ("s", OK[:-1]), ("s", OK[-1:]),
        ("c", GET), ("s", big), ("c", GET + post), ("s", OK + OK),
    ]  # fmt: skip

    def calls(factory: Http1Factory) -> list:
        return [
            (c.method, c.path, c.status, c.request_body, c.response_body, c.flags,
             c.response_body_size, c.response_end_ns)
            for c in calls_of(run(*steps, factory=factory)[0])
        ]  # fmt: skip

    small = Http1Factory(max_body=8)
    for memo in _KNOWN_HEADS:
        memo.clear()
    learn = Http1Parser._learn
    Http1Parser._learn = lambda self, key: None
    try:
        parsed, parsed_small = calls(HTTP1), calls(small)
    finally:
        Http1Parser._learn = learn
    calls(HTTP1)  # learns the heads
    assert calls(HTTP1) == parsed
    assert calls(small) == parsed_small
    assert [c[:3] for c in parsed[:5]] == [
        ("GET", "/a", 200), ("POST", "/p", 200), ("HEAD", "/h", 200), ("GET", "/a", 204),
        ("GET", "/a", 200),
    ]  # fmt: skip
    assert parsed_small[-3][4] == b"12345678"  # cut at the cap, and flagged
