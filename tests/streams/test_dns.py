"""DNS dissector: the golden capture (dnsmasq queried by dig and dnspython over UDP and
TCP) against what the clients were told, edge cases (compression loops, TC, unknown
types, one-sided flows) and junk that never raises and leaves the flow going on. Framing,
gaps, close and fuzz over the capture: tests/streams/test_dissector_contract.py."""

from __future__ import annotations

import json
import shlex
import struct
from pathlib import Path

import dns.message
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.pcap import read_segments
from schemas.records import ApiCall, flow_id
from streams.dissect.base import DissectFailed
from streams.dissect.dns import DNS, DnsDissector
from streams.dissect.dns.names import read_name
from streams.dissect.registry import default_registry
from streams.reassembly.events import Direction, Flow
from tests.golden.protocols.dissect import dissect_pcap
from tests.streams.dissect_kit import calls_of

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "dns"
C, S = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def flow(transport: str = "udp", port: int = 53) -> Flow:
    return Flow(flow_id("10.0.0.1", 40000, "10.0.0.2", port, transport), "10.0.0.1", 40000,
                "10.0.0.2", port)  # fmt: skip


def answer_view(call: ApiCall) -> list[dict]:
    return json.loads(call.response_body)["answers"]


def tcp_framed(*wires: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(w)) + w for w in wires)


# ------------------------------------------------------------------ golden vs clients


def _normal_data(rtype: str, text: str):
    """What a client printed for a record's data, in the dissector's spelling."""
    if rtype == "TXT":
        return shlex.split(text)
    return " ".join(tok.rstrip(".") if tok != "." else tok for tok in text.split())


def test_golden_capture_matches_what_the_clients_were_told():
    facts = json.loads((GOLDEN / "basic.client.json").read_text())
    calls = [c for c in dissect_pcap(GOLDEN / "basic.pcap") if c["protocol"] == "dns"]
    assert len(calls) == len(facts) == 16
    by_id = {(c["request"]["headers"]["transport"], int(c["request"]["headers"]["id"])): c
             for c in calls}  # fmt: skip
    for fact in facts:
        call = by_id[(fact["transport"], fact["id"])]
        assert call["request"]["method"] == fact["type"]
        assert call["request"]["path"] == fact["name"]
        assert call["response"]["reason"] == fact["rcode"]
        assert call["flags"] == []
        got = [
            [a["name"], a["type"], a["ttl"], a["data"]]
            for a in json.loads(call["response"]["body"])["answers"]
        ]
        want = [
            [name.rstrip("."), rtype, ttl, _normal_data(rtype, data)]
            for name, rtype, ttl, data in fact["answers"]
        ]
        assert got == want
        assert int(call["response"]["headers"]["ancount"]) == len(want)
    statuses = {c["response"]["reason"]: c["response"]["status"] for c in calls}
    assert statuses == {"NOERROR": 0, "NXDOMAIN": 3, "REFUSED": 5}
    # dig's three TCP queries went over one connection, in order.
    tcp = [c for c in calls if c["request"]["headers"]["transport"] == "tcp"]
    assert len({c["flow_id"] for c in tcp}) == 3  # dig's one + dnspython's two
    dig_tcp = [c for c in tcp if c["flow_id"] == tcp[0]["flow_id"]]
    assert [c["request"]["path"] for c in dig_tcp] == [
        "web.wiretide.test", "txt.wiretide.test", "api.wiretide.test"
    ]  # fmt: skip


def _golden_payloads() -> list[tuple[int, bytes]]:
    """(direction, message) of every DNS message in the golden capture, UDP ones as sent."""
    out = []
    for seg in read_segments(GOLDEN / "basic.pcap"):
        if seg.transport == "udp" and seg.payload:
            out.append((0 if seg.dst_port == 21153 else 1, seg.payload))
    return out


GOLDEN_MESSAGES = _golden_payloads()


def test_registry_picks_dns_for_udp_and_tcp_but_not_http():
    reg = default_registry()
    query = GOLDEN_MESSAGES[0][1]
    assert reg.detect(flow("udp", 53), query) is DNS
    assert reg.detect(flow("udp", 21153), query) is DNS  # no port hint: the probe decides
    assert reg.detect(flow("tcp", 53), tcp_framed(query)) is DNS
    assert reg.detect(flow("tcp", 53), tcp_framed(query)[:20]) is DNS  # first segment cut
    assert reg.detect(flow("tcp", 80), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is not DNS
    assert DNS.probe(b"\x00" * 40) == 0.0


# ---------------------------------------------------------------------- edge cases


def test_query_without_response_is_flagged_on_close():
    d = DnsDissector(flow())
    q = dns.message.make_query("lost.example", "A")
    assert d.receive(C, q.to_wire(), 1000, 0) == []
    assert not d.idle
    [call] = d.close(2000)
    assert call.flags == ("no_response",)
    assert (call.method, call.path, call.response_ts_ns) == ("A", "lost.example", 0)
    assert d.idle


def test_response_without_query_keeps_its_question():
    q = dns.message.make_query("late.example", "AAAA")
    r = dns.message.make_response(q)
    [call] = calls_of(DnsDissector(flow()).receive(S, r.to_wire(), 5, 0))
    assert call.flags == ("no_request",)
    assert (call.method, call.path, call.reason) == ("AAAA", "late.example", "NOERROR")


def test_out_of_order_responses_pair_by_id_and_question():
    d = DnsDissector(flow())
    qa = dns.message.make_query("a.example", "A")
    qb = dns.message.make_query("b.example", "MX")
    ra, rb = dns.message.make_response(qa), dns.message.make_response(qb)
    rb.set_rcode(3)
    d.receive(C, qa.to_wire(), 1, 0)
    d.receive(C, qb.to_wire(), 2, 1)
    [first] = calls_of(d.receive(S, rb.to_wire(), 3, 2))
    [second] = calls_of(d.receive(S, ra.to_wire(), 4, 3))
    assert (first.path, first.reason, first.ts_ns) == ("b.example", "NXDOMAIN", 2)
    assert (second.path, second.reason, second.ts_ns) == ("a.example", "NOERROR", 1)
    assert d.idle


def test_rdata_rendering_per_type():
    q = dns.message.make_query("z.example", "ANY")
    r = dns.message.make_response(q)
    for rtype, data in [
        ("SOA", "ns1.z.example. admin.z.example. 7 3600 600 86400 60"),
        ("CAA", '0 issue "letsencrypt.org"'),
        ("HINFO", '"x86" "linux"'),
        ("NS", "."),
        ("TYPE4321", r"\# 3 abcdef"),
    ]:
        r.answer.append(dns.rrset.from_text("z.example.", 30, "IN", rtype, data))
    [call] = calls_of(DnsDissector(flow()).receive(C, q.to_wire(), 1, 0)
                      + DnsDissector(flow()).receive(S, r.to_wire(), 2, 1))  # fmt: skip
    assert [a["data"] for a in answer_view(call)] == [
        "ns1.z.example admin.z.example 7 3600 600 86400 60",
        '0 issue "letsencrypt.org"',
        "x86 linux",
        ".",
        "abcdef",
    ]
    assert [a["type"] for a in answer_view(call)][-1] == "TYPE4321"


def test_compression_pointer_loop_fails_cleanly_and_the_flow_goes_on():
    header = struct.pack("!6H", 7, 0, 1, 0, 0, 0)
    looping = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"  # the name points at itself
    with pytest.raises(Exception, match="loop"):
        read_name(looping, 12)
    d = DnsDissector(flow())
    [failed] = d.receive(C, looping, 1, 0)
    assert isinstance(failed, DissectFailed) and "loop" in failed.reason
    q = dns.message.make_query("fine.example", "A")
    d.receive(C, q.to_wire(), 2, 1)
    [call] = calls_of(d.receive(S, dns.message.make_response(q).to_wire(), 3, 2))
    assert call.path == "fine.example"


def test_label_escapes_and_root_name():
    q = dns.message.make_query(dns.name.Name([b"a.b", b"sp ace", b"\x00", b""]), "A")
    d = DnsDissector(flow())
    d.receive(C, q.to_wire(), 1, 0)
    [call] = d.close(2)
    assert call.path == "a\\.b.sp\\032ace.\\000"
    root = dns.message.make_query(".", "NS")
    d.receive(C, root.to_wire(), 3, 1)
    assert d.close(4) == []  # already closed: nothing left to flush
    d2 = DnsDissector(flow())
    d2.receive(C, root.to_wire(), 3, 1)
    assert [c.path for c in d2.close(4)] == ["."]


def test_truncated_udp_response_keeps_whole_records_and_sets_tc():
    q = dns.message.make_query("big.example", "TXT")
    r = dns.message.make_response(q)
    for k in range(5):
        r.answer.append(dns.rrset.from_text("big.example.", 1, "IN", "TXT", f'"part {k}"'))
    wire = bytearray(r.to_wire())
    wire[2] |= 0x02  # TC
    d = DnsDissector(flow())
    d.receive(C, q.to_wire(), 1, 0)
    [call] = calls_of(d.receive(S, bytes(wire[:-5]), 2, 1))
    assert "response_truncated" in call.flags
    assert dict(call.response_headers)["flags"] == "qr tc rd"
    assert [a["data"] for a in answer_view(call)] == [["part 0"], ["part 1"], ["part 2"],
                                                      ["part 3"]]  # fmt: skip


def test_pending_queries_are_capped():
    d = DnsDissector(flow(), max_pending=4)
    out = []
    for k in range(10):
        out += d.receive(C, dns.message.make_query(f"q{k}.example", "A").to_wire(), k, k)
    assert [c.path for c in calls_of(out)] == [f"q{k}.example" for k in range(6)]
    assert all(c.flags == ("no_response",) for c in calls_of(out))
    assert len(d.close(99)) == 4


def test_tcp_length_prefix_too_short_fails_then_resyncs_on_a_message_start():
    d = DnsDissector(flow("tcp"))
    [failed] = d.receive(C, b"\x00\x03abc", 1, 0)
    assert isinstance(failed, DissectFailed)
    q = dns.message.make_query("again.example", "A")
    assert d.receive(C, b"junk junk junk junk", 2, 5) == []
    d.receive(C, tcp_framed(q.to_wire()), 3, 24)
    [call] = calls_of(d.receive(S, tcp_framed(dns.message.make_response(q).to_wire()), 4, 0))
    assert call.path == "again.example"


# ---------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=600), transport=st.sampled_from(["udp", "tcp"]))
def test_random_bytes_never_raise_and_the_flow_goes_on(junk, transport):
    d = DnsDissector(flow(transport))
    events = d.receive(C, junk, 1, 0) + d.receive(S, junk[::-1], 2, 0)
    assert all(isinstance(e, ApiCall | DissectFailed) for e in events)
    if transport == "udp":  # each datagram stands alone: the next query still pairs
        q = dns.message.make_query("after.junk", "A")
        d.receive(C, q.to_wire(), 3, 1)
        [call] = calls_of(d.receive(S, dns.message.make_response(q).to_wire(), 4, 1))
        assert call.path == "after.junk" and call.flags == ()
    d.close(5)
    assert DNS.probe(junk) in (0.0, 0.5, 0.7, 1.0)
