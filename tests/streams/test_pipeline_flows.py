"""Flows no dissector claims, and UDP: they still reach the calls topic as `tcp`/`udp`
records with endpoints, bytes each way and timings (what the service map needs)."""

from __future__ import annotations

from dataclasses import replace

from producers.publisher import partition_key
from schemas.records import ACK, FIN, PSH, SYN, Segment
from streams.dissect.opaque import TlsTwins
from streams.dissect.registry import Registry, default_registry
from streams.pipeline import Pipeline
from streams.redact import RedactionPolicy

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 7777)


def tcp(src, dst, seq, payload=b"", flags=ACK | PSH, ts=0):
    return Segment(ts, src[0], src[1], dst[0], dst[1], seq, 0, flags, payload)


def udp(src, dst, payload, ts):
    return Segment(ts, src[0], src[1], dst[0], dst[1], 0, 0, 0, payload, transport="udp")


def run(segments, registry=None):
    pipe = Pipeline(registry or default_registry(), RedactionPolicy.default())
    calls = []
    for token, seg in enumerate(segments):
        calls += pipe.process(token, [seg]).calls
    return calls + pipe.finish().calls, pipe


def test_unknown_tcp_flow_becomes_one_tcp_record_with_bytes_and_timings():
    segs = [
        tcp(CLIENT, SERVER, 100, flags=SYN, ts=1_000),
        tcp(SERVER, CLIENT, 900, flags=SYN | ACK, ts=2_000),
        tcp(CLIENT, SERVER, 101, b"\x00\x01binary hello", ts=3_000),
        tcp(SERVER, CLIENT, 901, b"\xff" * 40, ts=5_000),
        tcp(CLIENT, SERVER, 115, b"more", ts=6_000),
        tcp(CLIENT, SERVER, 119, flags=FIN | ACK, ts=7_000),
        tcp(SERVER, CLIENT, 941, flags=FIN | ACK, ts=8_000),
    ]
    calls, _ = run(segs)
    assert len(calls) == 1
    call = calls[0]
    assert call.protocol == "tcp"
    assert (call.src_ip, call.src_port, call.dst_ip, call.dst_port) == (*CLIENT, *SERVER)
    assert (call.request_body_size, call.response_body_size) == (18, 40)
    assert (call.ts_ns, call.response_ts_ns, call.response_end_ns) == (3_000, 5_000, 5_000)
    assert call.request_end_ns == 6_000
    assert call.flags == ()


def test_udp_datagrams_without_a_dissector_become_a_udp_record():
    segs = [
        udp(CLIENT, ("10.0.0.2", 9999), b"ping", 10),
        udp(("10.0.0.2", 9999), CLIENT, b"pong!", 20),
        udp(CLIENT, ("10.0.0.2", 9999), b"ping", 30),
    ]
    calls, pipe = run(segs, Registry([]))
    assert pipe.skipped_segments == 0
    [call] = calls
    assert call.protocol == "udp"
    assert (call.src_port, call.dst_port) == (40000, 9999)
    assert (call.request_body_size, call.response_body_size) == (8, 5)


def test_udp_flow_closes_when_idle_and_its_tokens_are_released():
    pipe = Pipeline(Registry([]), RedactionPolicy.default())
    out = pipe.process(0, [udp(CLIENT, ("10.0.0.2", 9999), b"x", 1)])
    assert out.released == [0]  # an opaque flow never holds commits back
    expired = pipe.expire(1 + 31 * 1_000_000_000)
    assert [c.protocol for c in expired.calls] == ["udp"]


def test_tls_plaintext_and_its_ciphertext_are_separate_flows():
    """With --tls, one connection arrives twice: its encrypted segments (AF_PACKET) and
    its plaintext (uprobes, transport "tls"). They must not be mixed into one stream."""
    server = ("10.0.0.2", 443)
    req = b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def plain(src, dst, seq, payload, ts):
        return Segment(ts, *src, *dst, seq, 0, ACK | PSH, payload, source="tls", transport="tls")

    segs = [
        tcp(CLIENT, server, 100, flags=SYN, ts=1),
        tcp(server, CLIENT, 900, flags=SYN | ACK, ts=2),
        tcp(CLIENT, server, 101, b"\x16\x03\x01" + bytes(60), ts=3),  # ciphertext
        plain(CLIENT, server, 0, req, 4),
        tcp(server, CLIENT, 901, b"\x17\x03\x03" + bytes(80), ts=5),
        plain(server, CLIENT, 0, resp, 6),
    ]
    calls, _ = run(segs)
    (http,) = calls  # the ciphertext is no duplicate `tcp` row beside its plaintext
    assert (http.protocol, http.path, http.status, http.tls) == ("http", "/secret", 200, True)
    assert http.flow_id.startswith("tls:")
    # Without its plaintext the ciphertext is one `tcp` row, and so is a connection with
    # plaintext whose raw bytes are not TLS records (not its ciphertext, then).
    (alone,) = run(s for s in segs if s.transport == "tcp")[0]
    assert (alone.protocol, alone.request_body_size) == ("tcp", 63)
    not_tls = [
        replace(s, payload=b"\xee" + s.payload[1:]) if s.payload[:1] == b"\x16" else s for s in segs
    ]
    assert sorted(c.protocol for c in run(not_tls)[0]) == ["http", "tcp"]


def test_tls_twins_remember_the_most_recent_connections():
    twins = TlsTwins(cap=2)
    for port in (1, 2, 3):
        twins.saw_plaintext(f"tls:10.0.0.1:{port}-10.0.0.2:443")
    assert [twins.has_plaintext(f"tcp:10.0.0.1:{p}-10.0.0.2:443") for p in (1, 2, 3)] == [
        False,
        True,
        True,
    ]
    assert partition_key("tls:10.0.0.1:1-10.0.0.2:443") == partition_key(
        "tcp:10.0.0.1:1-10.0.0.2:443"
    )
