"""HTTP/2 dissector: the golden capture (curl against hypercorn) against what curl did, edge
cases built with hyperframe + hpack, and Hypothesis properties (junk never breaks it;
buffers stay under the stated cap). Framing, gaps, close and fuzz over the captures:
tests/streams/test_dissector_contract.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.pcap import read_segments
from schemas.records import ApiCall, flow_id
from streams.dissect.base import DissectFailed, call_id, new_call
from streams.dissect.http2 import HTTP2, Http2Factory, after_h2c_upgrade
from streams.dissect.http2.frames import PREFACE
from streams.dissect.registry import default_registry
from streams.reassembly.events import Direction, Flow
from tests.golden.protocols.dissect import dissect_pcap
from tests.streams.dissect_kit import TIME_FIELDS, C, S, calls_of, failures_of, header

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols"
HTTP2_PCAP = GOLDEN / "http2" / "basic.pcap"
GRPC_PCAP = GOLDEN / "grpc" / "basic.pcap"
FLOW = Flow(flow_id("10.0.0.1", 40000, "10.0.0.2", 8080), "10.0.0.1", 40000, "10.0.0.2", 8080)


# ------------------------------------------------------------- helpers


class Recording:
    """One TCP flow of a capture: its Flow and its payload-carrying segments in order."""

    def __init__(self, flow: Flow, events: list[tuple[int, int, int, bytes]]) -> None:
        self.flow = flow
        self.events = events  # (direction, ts_ns, seq, payload)

    def stream(self, direction: int) -> bytes:
        return b"".join(e[3] for e in self.events if e[0] == direction)


def recordings(pcap: Path, server_port: int) -> list[Recording]:
    flows: dict[str, Recording] = {}
    for seg in read_segments(pcap):
        if not seg.payload or server_port not in (seg.src_port, seg.dst_port):
            continue
        to_server = seg.dst_port == server_port
        d = 0 if to_server else 1
        cip, cport = (seg.src_ip, seg.src_port) if to_server else (seg.dst_ip, seg.dst_port)
        fid = flow_id(cip, cport, "127.0.0.1", server_port)
        rec = flows.get(fid)
        if rec is None:
            rec = flows[fid] = Recording(Flow(fid, cip, cport, "127.0.0.1", server_port), [])
        rec.events.append((d, seg.ts_ns, seg.seq, seg.payload))
    return list(flows.values())


def feed(factory, flow: Flow, events, close: bool = True) -> list:
    d = factory(flow)
    out = []
    for direction, ts, seq, data in events:
        out += d.receive(Direction(direction), data, ts, seq)
    if close:
        out += d.close(10**19)
    return out


def strip_times(calls: list[ApiCall]) -> list[tuple]:
    out = []
    for c in calls:
        d = {k: getattr(c, k) for k in c.__slots__ if k not in TIME_FIELDS}
        out.append(tuple(sorted(d.items(), key=lambda kv: kv[0])))
    return sorted(out, key=repr)


HTTP2_RECS = recordings(HTTP2_PCAP, 21050) + recordings(HTTP2_PCAP, 21051)
GRPC_RECS = recordings(GRPC_PCAP, 21000)
ALL_RECS = HTTP2_RECS + GRPC_RECS


class Peer:
    """Frames from one side, built with hyperframe and HPACK-encoded with hpack."""

    def __init__(self) -> None:
        self.encoder = Encoder()

    def headers(self, sid: int, fields, end_stream=False, **kw) -> bytes:
        f = HeadersFrame(sid, self.encoder.encode(fields), **kw)
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        return f.serialize()


def data(sid: int, payload: bytes, end_stream=False, **kw) -> bytes:
    f = DataFrame(sid, payload, **kw)
    if end_stream:
        f.flags.add("END_STREAM")
    return f.serialize()


def settings_frame(**values) -> bytes:
    return SettingsFrame(
        0, settings={getattr(SettingsFrame, k): v for k, v in values.items()}
    ).serialize()


def request(path="/x", method="GET", authority="svc", extra=()) -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
        *extra,
    ]


def run(*steps, factory=HTTP2, close=True, flow=FLOW) -> list:
    """Feed (direction, bytes) steps, one segment each, times 1, 2, 3, ..."""
    seq = [1000, 5000]
    events = []
    for k, (direction, payload) in enumerate(steps):
        events.append((direction, k + 1, seq[direction], payload))
        seq[direction] += len(payload)
    return feed(factory, flow, events, close)


def opened() -> tuple[Peer, Peer, list]:
    client, server = Peer(), Peer()
    return (
        client,
        server,
        [(C, PREFACE + settings_frame()), (S, settings_frame(MAX_CONCURRENT_STREAMS=100))],
    )


# ------------------------------------------------------------- the golden capture


def test_golden_calls_are_what_the_clients_did():
    sessions = json.loads((GOLDEN / "http2" / "basic.facts.json").read_text())
    facts = [f for session in sessions for f in session]
    calls = dissect_pcap(HTTP2_PCAP)
    assert len(calls) == len(facts) == 6
    by_target = {}
    for c in calls:
        q = c["request"]["query"]
        by_target[c["request"]["path"] + ("?" + q if q else "")] = c
    for f in facts:
        c = by_target[f["target"]]
        assert c["protocol"] == "http2"
        assert c["request"]["method"] == f["method"]
        if "response_body" in f:  # curl, one connection each: bodies as curl saw them
            assert c["request"]["body"] == f["request_body"]
            assert c["response"]["body"] == f["response_body"]  # gzip decoded for /gzip
            assert [c["response"]["status"]] == f["statuses"]
        else:  # nghttp: status and body size from its statistics
            assert c["response"]["status"] == f["status"]
            assert c["response"]["body_size"] == f["response_body_size"]
        assert c["request"]["version"] == c["response"]["version"] == "HTTP/2"
        assert ":authority" in c["request"]["headers"]
        assert not [h for h in c["request"]["headers"] if h.startswith(":") and h != ":authority"]
        assert not [h for h in c["response"]["headers"] if h.startswith(":")]
        assert c["response"]["reason"] == ""
        assert c["flags"] == []
        assert c["elapsed_ms"] >= 0
    assert by_target["/hello?name=wire&lang=en"]["request"]["path"] == "/hello"
    gz = by_target["/gzip"]
    assert gz["response"]["headers"]["content-encoding"] == "gzip"
    assert gz["response"]["body_size"] < len(gz["response"]["body"])
    assert json.loads(by_target["/echo"]["request"]["body"]) == {"item": "widget", "qty": 2}
    assert by_target["/item/2"]["response"]["body"] == '{"item": "/item/2"}'  # nginx.conf
    parallel = {by_target[t]["flow_id"] for t in ("/item/1", "/item/2", "/nope")}
    assert len(parallel) == 1  # three streams multiplexed on one connection


def test_golden_ids_and_times_come_from_the_request_frames():
    for rec in HTTP2_RECS:
        for c in calls_of(feed(HTTP2, rec.flow, rec.events)):
            assert c.ts_ns <= c.request_end_ns and c.ts_ns <= c.response_ts_ns <= c.response_end_ns
            _, ts, seq, payload = next(e for e in rec.events if e[0] == 0 and e[1] == c.ts_ns)
            starts = [(seq + o) & 0xFFFFFFFF for o in range(len(payload))]
            assert [s for s in starts if call_id(rec.flow.flow_id, s, ts) == c.call_id]


def test_roles_backwards_give_the_same_calls_with_endpoints_swapped():
    rec = next(r for r in HTTP2_RECS if r.flow.server_port == 21051)
    f = rec.flow
    backwards = Flow(f.flow_id, f.server_ip, f.server_port, f.client_ip, f.client_port)
    swapped = [(1 - d, ts, seq, p) for d, ts, seq, p in rec.events]
    want = calls_of(feed(HTTP2, f, rec.events))
    got = calls_of(feed(HTTP2, backwards, swapped))
    assert strip_times(got) == strip_times(want)
    assert [(c.src_port, c.dst_port) for c in got] == [(f.client_port, 21051)] * 3


# ------------------------------------------------------------- detection


def test_probe_scores():
    assert HTTP2.probe(PREFACE) == 1.0
    assert HTTP2.probe(PREFACE[:10]) >= 0.5
    assert HTTP2.probe(settings_frame(MAX_CONCURRENT_STREAMS=100)) == 0.8
    assert HTTP2.probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0.0
    assert HTTP2.probe(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)) == 0.0
    assert HTTP2.probe(b"*3\r\n$3\r\nSET\r\n") == 0.0
    assert HTTP2.probe(b"\x00\x00\x00\x08\x04\xd2\x16\x2f") == 0.0  # PostgreSQL SSLRequest
    server = Peer()
    mid = server.headers(3, [(":status", "200")]) + data(3, b"hello") + data(3, b"", True)
    assert HTTP2.probe(mid) >= 0.55


def test_registry_picks_http2_for_the_preface_but_not_for_http1():
    reg = default_registry()
    assert reg.detect(FLOW, PREFACE + settings_frame()).protocol == "http2"
    assert reg.detect(FLOW, b"GET / HTTP/1.1\r\n\r\n").protocol == "http"


def test_capture_started_after_the_preface_flags_unknown_headers_instead_of_guessing():
    """Drop each direction's first segments: blocks that refer to HPACK entries made
    before the capture are flagged, every header that is shown is the real one."""
    rec = next(r for r in GRPC_RECS)
    want = {c.path: c for c in calls_of(feed(HTTP2, rec.flow, rec.events))}
    firsts = {d: next(k for k, e in enumerate(rec.events) if e[0] == d) for d in (0, 1)}
    tail = [e for k, e in enumerate(rec.events) if k not in firsts.values()]
    assert HTTP2.probe(tail[0][3]) >= 0.5
    events = feed(HTTP2, rec.flow, tail)
    got = calls_of(events)
    assert got and not failures_of(events)
    for c in got:
        if "hpack_unknown" in c.flags:
            continue
        ref = want[c.path]
        assert c.request_headers == ref.request_headers
        assert c.response_headers == ref.response_headers
        assert (c.status, c.reason, c.response_body) == (ref.status, ref.reason, ref.response_body)


# ------------------------------------------------------------- frames and streams


def test_continuation_padding_and_priority():
    client, server, steps = opened()
    block = client.encoder.encode(request("/cont", extra=[("x-long", "v" * 300)]))
    flags = ["PADDED", "PRIORITY"]
    h = HeadersFrame(1, block[:10], pad_length=7, depends_on=0, stream_weight=16, flags=flags)
    c1 = ContinuationFrame(1, block[10:50])
    c2 = ContinuationFrame(1, block[50:])
    c2.flags.add("END_HEADERS")
    req = (
        h.serialize() + c1.serialize() + c2.serialize() + PriorityFrame(1, depends_on=0).serialize()
    )
    req += data(1, b"abc", pad_length=20, flags=["PADDED"]) + data(1, b"def", True)
    resp = server.headers(1, [(":status", "200")]) + data(1, b"ok", True)
    calls = calls_of(run(*steps, (C, req), (S, resp)))
    assert len(calls) == 1
    c = calls[0]
    assert (c.method, c.path, c.status, c.request_body, c.response_body) == (
        "GET",
        "/cont",
        200,
        b"abcdef",
        b"ok",
    )
    assert header(c.request_headers, "x-long") == "v" * 300
    assert c.request_body_size == 6 and c.flags == ()


def test_trailers_interim_response_and_many_data_frames():
    client, server, steps = opened()
    req = client.headers(1, request("/up", "POST"))
    for k in range(50):
        req += data(1, b"%02d," % k)
    req += client.headers(1, [("x-checksum", "abc")], end_stream=True)
    resp = server.headers(1, [(":status", "100")]) + server.headers(
        1, [(":status", "200"), ("x-a", "1")]
    )
    resp += data(1, b"done") + server.headers(1, [("x-trailer", "t")], end_stream=True)
    (c,) = calls_of(run(*steps, (C, req), (S, resp)))
    assert c.status == 200
    assert c.request_body == b"".join(b"%02d," % k for k in range(50))
    assert header(c.request_headers, "x-checksum") == "abc"
    assert [k for k, _ in c.response_headers] == ["x-a", "x-trailer"]


def test_header_table_size_settings_and_size_updates():
    client, server, steps = opened()
    steps[0] = (C, PREFACE + settings_frame(HEADER_TABLE_SIZE=65536))
    server.encoder.header_table_size = 65536  # the server's encoder takes up the offer
    big = [(f"x-big-{k}", "v" * 1000) for k in range(20)]
    req = client.headers(1, request("/a"), end_stream=True) + client.headers(
        3, request("/b"), end_stream=True
    )
    resp = server.headers(1, [(":status", "200"), *big], end_stream=True)
    resp += server.headers(3, [(":status", "200"), *big], end_stream=True)
    calls = calls_of(run(*steps, (C, req), (S, resp)))
    assert [c.path for c in calls] == ["/a", "/b"]
    assert all(c.response_headers == tuple(big) for c in calls)
    server.encoder.header_table_size = 0  # shrink: an update at the start of the next block
    more = calls_of(
        run(*steps, (C, req), (S, server.headers(1, [(":status", "204")], end_stream=True)))
    )
    assert more[0].status == 204


def test_reset_stream_is_emitted_at_once_and_flagged():
    client, server, steps = opened()
    d = HTTP2(FLOW)
    for direction, payload in steps:
        d.receive(direction, payload, 1, 0)
    d.receive(C, client.headers(1, request("/slow")), 2, 0)
    assert not d.idle
    out = d.receive(C, RstStreamFrame(1, error_code=8).serialize(), 3, 0)
    (c,) = calls_of(out)
    assert c.path == "/slow" and "reset" in c.flags and "no_response" in c.flags
    assert d.idle
    assert d.receive(S, server.headers(1, [(":status", "200")], end_stream=True), 4, 0) == []


def test_goaway_and_close_flag_unanswered_streams():
    client, server, steps = opened()
    req = client.headers(1, request("/a"), end_stream=True) + client.headers(
        3, request("/b"), end_stream=True
    )
    resp = (
        server.headers(1, [(":status", "200")], end_stream=True)
        + GoAwayFrame(0, last_stream_id=1).serialize()
    )
    calls = {c.path: c for c in calls_of(run(*steps, (C, req), (S, resp)))}
    assert calls["/a"].flags == ()
    assert set(calls["/b"].flags) == {"goaway", "no_response"}
    assert calls["/b"].response_ts_ns == 0


def test_server_push_is_a_call_of_its_own():
    client, server, steps = opened()
    req = client.headers(1, request("/page"), end_stream=True)
    promise = PushPromiseFrame(
        1, promised_stream_id=2, data=server.encoder.encode(request("/style.css"))
    )
    promise.flags.add("END_HEADERS")
    resp = promise.serialize() + server.headers(1, [(":status", "200")], end_stream=True)
    resp += server.headers(2, [(":status", "200")]) + data(2, b"body{}", True)
    calls = {c.path: c for c in calls_of(run(*steps, (C, req), (S, resp)))}
    assert calls["/style.css"].flags == ("push",)
    assert calls["/style.css"].response_body == b"body{}"
    assert calls["/style.css"].src_ip == FLOW.client_ip


def test_open_streams_are_capped():
    client, server, steps = opened()
    factory = Http2Factory(max_streams=4)
    req = b"".join(client.headers(s, request(f"/{s}")) for s in range(1, 20, 2))
    calls = calls_of(run(*steps, (C, req), factory=factory, close=False))
    assert [c.path for c in calls] == ["/1", "/3", "/5", "/7", "/9", "/11"]
    assert all({"evicted", "no_response", "request_incomplete"} <= set(c.flags) for c in calls)


def test_body_cap_and_huge_data_frames_stream_through():
    client, server, steps = opened()
    factory = Http2Factory(max_body=1000, max_frame=1024)
    req = client.headers(1, request("/big"), end_stream=True)
    payload = b"x" * 300_000
    resp = server.headers(1, [(":status", "200")]) + data(1, payload, True)
    d = factory(FLOW)
    for direction, p in [*steps, (C, req), (S, resp[:150_000])]:
        d.receive(direction, p, 1, 0)
        assert d.buffered <= 2 * 1024 + 1000
    (c,) = calls_of(d.receive(S, resp[150_000:], 2, 0))
    assert c.response_body == b"x" * 1000 and c.response_body_size == 300_000
    assert "response_truncated" in c.flags


def test_bad_header_block_with_known_context_stops_the_flow():
    client, server, steps = opened()
    good = client.headers(1, request("/ok"), end_stream=True)
    bad = HeadersFrame(3, b"\xff\xff\xff\xff\x0f", flags=["END_HEADERS", "END_STREAM"]).serialize()
    out = run(
        *steps, (C, good + bad), (S, server.headers(1, [(":status", "200")], end_stream=True))
    )
    assert len(failures_of(out)) == 1 and "HPACK" in failures_of(out)[0].reason
    (c,) = calls_of(out)
    assert c.path == "/ok" and set(c.flags) == {"malformed", "no_response"}


def test_gap_flags_open_calls_and_stops():
    client, server, steps = opened()
    d = HTTP2(FLOW)
    for direction, p in [*steps, (C, client.headers(1, request("/g"), end_stream=True))]:
        d.receive(direction, p, 1, 0)
    (c,) = calls_of(d.gap(S, 100, 5))
    assert set(c.flags) >= {"gap", "no_response"}
    assert d.idle and d.receive(S, b"anything", 6, 0) == []


def test_malformed_frames_give_a_failure_and_opaque_flow():
    client, server, steps = opened()
    out = run(*steps, (C, b"\x00\x00\x05\x00\x08\x00\x00\x00\x01\x09abcd"))  # pad > length
    assert len(failures_of(out)) == 1 and "padding" in failures_of(out)[0].reason


def test_h2c_upgrade_answers_the_http1_request_on_stream_1():
    http1_request = new_call(
        FLOW,
        "http",
        777,
        5,
        method="GET",
        path="/up",
        query="a=1",
        request_version="HTTP/1.1",
        request_headers=(("host", "svc"),),
        request_end_ns=5,
    )
    d = after_h2c_upgrade(FLOW, http1_request)
    server, client = Peer(), Peer()
    out = d.receive(
        S, settings_frame() + server.headers(1, [(":status", "200")]) + data(1, b"hi", True), 7, 0
    )
    out += d.receive(
        C, PREFACE + settings_frame() + client.headers(3, request("/next"), end_stream=True), 8, 0
    )
    out += d.receive(S, server.headers(3, [(":status", "404")], end_stream=True), 9, 0)
    up, nxt = calls_of(out)
    assert up.call_id == http1_request.call_id and up.protocol == "http2"
    assert (up.method, up.path, up.query, up.status, up.response_body) == (
        "GET",
        "/up",
        "a=1",
        200,
        b"hi",
    )
    assert up.flags == ("h2c_upgrade",) and up.response_version == "HTTP/2"
    assert (nxt.path, nxt.status) == ("/next", 404)
    alone = after_h2c_upgrade(FLOW).receive(
        S, settings_frame() + Peer().headers(1, [(":status", "200")], True), 7, 0
    )
    assert calls_of(alone)[0].flags[0] == "no_request"


# ------------------------------------------------------------- properties


CAP_FACTORY = Http2Factory(max_body=512, max_header=4096, max_streams=8, max_frame=2048)
CAP = 2 * 2048 + 2 * 4096 + 8 * 2 * 512  # frames + header blocks + bodies


def assert_sane(events: list) -> None:
    for e in events:
        assert isinstance(e, ApiCall | DissectFailed)
        if isinstance(e, ApiCall):
            assert e.protocol in ("http2", "grpc")


frame_like = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda t, f, s, p: len(p).to_bytes(3, "big") + bytes([t, f]) + s.to_bytes(4, "big") + p,
        st.integers(0, 10),
        st.integers(0, 255),
        st.integers(0, 9),
        st.binary(max_size=40),
    ),
    st.just(PREFACE),
    st.just(settings_frame(HEADER_TABLE_SIZE=0)),
    st.just(Peer().headers(1, request())),
    st.just(WindowUpdateFrame(0, window_increment=5).serialize()),
)


@settings(max_examples=300, deadline=None)
@given(program=st.lists(st.tuples(st.sampled_from([C, S, "gap"]), frame_like), max_size=25))
def test_junk_never_breaks_it(program):
    d = CAP_FACTORY(FLOW)
    seq = [0, 0]
    for k, (direction, payload) in enumerate(program):
        if direction == "gap":
            assert_sane(d.gap(C, len(payload) + 1, k))
            continue
        assert_sane(d.receive(direction, payload, k, seq[direction]))
        seq[direction] += len(payload)
        assert d.buffered <= CAP
    assert_sane(d.close(10**6))
    assert d.idle


@pytest.mark.parametrize("rec", ALL_RECS, ids=lambda r: str(r.flow.client_port))
def test_golden_flows_stay_under_the_default_cap(rec):
    d = HTTP2(rec.flow)
    for direction, ts, seq, p in rec.events:
        d.receive(Direction(direction), p, ts, seq)
        assert d.buffered <= 2 * 256 * 1024 + 2 * 256 * 1024 + 256 * 2 * 64 * 1024
    d.close(10**19)
    assert d.idle
