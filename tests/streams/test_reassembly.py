"""TCP reassembly: unit tests per rule, and Hypothesis properties."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import ACK, FIN, PSH, RST, SYN, Segment, flow_id
from streams.reassembly.events import (
    DataReceived,
    Direction,
    GapSkipped,
    StreamClosed,
    StreamOpened,
)
from streams.reassembly.tcp import TcpReassembler

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
CLI = ("10.0.0.1", 40000)
SRV = ("10.0.0.2", 80)
FID = flow_id(*CLI, *SRV)
MASK = 0xFFFFFFFF


def mk(src, dst, seq, payload=b"", *, flags=ACK | PSH, ack=0, ts=0, transport="tcp"):
    return Segment(
        ts_ns=ts,
        src_ip=src[0],
        src_port=src[1],
        dst_ip=dst[0],
        dst_port=dst[1],
        seq=seq & MASK,
        ack=ack & MASK,
        flags=flags,
        payload=payload,
        node="n1",
        transport=transport,
    )


def c(seq, payload=b"", **kw):
    return mk(CLI, SRV, seq, payload, **kw)


def s(seq, payload=b"", **kw):
    return mk(SRV, CLI, seq, payload, **kw)


def run(r, segs):
    out = []
    for sg in segs:
        out.extend(r.feed(sg))
    return out


def data(events, direction=None):
    return b"".join(
        e.data
        for e in events
        if isinstance(e, DataReceived) and (direction is None or e.direction == direction)
    )


def kinds(events):
    return [type(e).__name__ for e in events]


def handshake(r, cisn=1000, sisn=5000, ts=0):
    return run(
        r,
        [
            c(cisn, flags=SYN, ts=ts),
            s(sisn, flags=SYN | ACK, ack=cisn + 1, ts=ts + 1),
            c(cisn + 1, flags=ACK, ack=sisn + 1, ts=ts + 2),
        ],
    )


# -- roles -------------------------------------------------------------------------------
def test_syn_sender_is_client_even_against_port_guess():
    r = TcpReassembler()
    a, b = ("10.1.1.1", 80), ("10.1.1.2", 50000)  # the SYN comes *from* port 80
    ev = run(r, [mk(a, b, 10, flags=SYN), mk(a, b, 11, b"hi")])
    assert kinds(ev) == ["StreamOpened", "DataReceived"]
    flow = ev[0].flow
    assert (flow.client_ip, flow.client_port) == a
    assert (flow.server_ip, flow.server_port) == b
    assert ev[1].direction == C2S


def test_syn_ack_receiver_is_client():
    r = TcpReassembler()
    a, b = ("10.1.1.1", 50000), ("10.1.1.2", 50001)
    ev = run(r, [mk(b, a, 7, flags=SYN | ACK, ack=101), mk(a, b, 101, b"req")])
    flow = ev[0].flow
    assert (flow.client_ip, flow.client_port) == a
    assert ev[1].direction == C2S and ev[1].seq == 101 and ev[1].data == b"req"


@pytest.mark.parametrize(
    ("sender", "receiver", "server"),
    [
        (("10.0.0.2", 80), ("10.0.0.1", 40000), ("10.0.0.2", 80)),  # well-known port
        (("10.0.0.1", 40000), ("10.0.0.2", 443), ("10.0.0.2", 443)),
        (("10.0.0.2", 8080), ("10.0.0.1", 40000), ("10.0.0.2", 8080)),  # common server
        (("10.0.0.1", 1025), ("10.0.0.2", 6379), ("10.0.0.2", 6379)),
        (("10.0.0.2", 22), ("10.0.0.1", 1000), ("10.0.0.2", 22)),  # both < 1024: lower
        (("10.0.0.1", 40000), ("10.0.0.2", 40001), ("10.0.0.2", 40001)),  # first sender
        (("10.0.0.2", 40001), ("10.0.0.1", 40000), ("10.0.0.1", 40000)),
    ],
)
def test_mid_stream_port_guess(sender, receiver, server):
    r = TcpReassembler()
    ev = r.feed(mk(sender, receiver, 123456, b"x"))
    flow = ev[0].flow
    assert (flow.server_ip, flow.server_port) == server
    assert ev[1].direction == (C2S if sender != server else S2C)


def test_late_syn_fixes_roles_before_any_data():
    r = TcpReassembler()
    a, b = ("10.1.1.1", 40000), ("10.1.1.2", 40001)
    assert r.feed(mk(b, a, 1, flags=ACK, ack=5)) == []  # pure ACK: b guessed client
    ev = run(r, [mk(a, b, 10, flags=SYN), mk(a, b, 11, b"x")])
    assert (ev[0].flow.client_ip, ev[0].flow.client_port) == a


def test_stream_opened_once_and_carries_flow_metadata():
    r = TcpReassembler()
    ev = handshake(r, ts=100)
    assert ev == []  # nothing until data
    ev = run(r, [c(1001, b"a", ts=200), s(5001, b"b", ts=300), c(1002, b"c", ts=400)])
    assert kinds(ev) == ["StreamOpened", "DataReceived", "DataReceived", "DataReceived"]
    opened = ev[0]
    assert isinstance(opened, StreamOpened) and opened.ts_ns == 100
    assert opened.flow.flow_id == FID and opened.flow.node == "n1"
    assert opened.flow.source == "pcap"


def test_flow_without_data_emits_nothing():
    r = TcpReassembler()
    ev = handshake(r) + run(r, [c(1001, flags=FIN | ACK), s(5001, flags=FIN | ACK)])
    assert ev == []
    assert r.active_flows == 0


# -- in-order, ISN, mid-stream -----------------------------------------------------------
def test_data_starts_at_isn_plus_one_with_seq_and_ts_per_segment():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1001, b"GET ", ts=10), c(1005, b"/ HTTP", ts=11)])
    d = [e for e in ev if isinstance(e, DataReceived)]
    assert [(e.data, e.seq, e.ts_ns) for e in d] == [(b"GET ", 1001, 10), (b"/ HTTP", 1005, 11)]


def test_mid_stream_first_payload_sets_start_and_older_bytes_are_dropped():
    r = TcpReassembler()
    ev = run(r, [c(500, b"later"), c(490, b"0123456789"), c(505, b"more")])
    assert data(ev) == b"latermore"
    assert r.stats.retransmits == 1


def test_syn_ack_ack_starts_client_direction():
    r = TcpReassembler()
    # we missed the client's SYN; the SYN+ACK says the client's data starts at 1001
    ev = run(r, [s(5000, flags=SYN | ACK, ack=1001), c(1006, b"world"), c(1001, b"hello")])
    assert data(ev) == b"helloworld"


def test_late_syn_after_syn_ack_keeps_both_directions():
    r = TcpReassembler()
    a, b = ("10.1.1.1", 40000), ("10.1.1.2", 40001)
    ev = run(
        r,
        [
            mk(b, a, 7, flags=SYN | ACK, ack=101),
            mk(a, b, 100, flags=SYN),  # captured late
            mk(b, a, 9, b"cd"),  # out of order: server's data starts at 8
            mk(a, b, 101, b"req"),
            mk(b, a, 8, b"b"),
        ],
    )
    assert (ev[0].flow.client_ip, ev[0].flow.client_port) == a
    assert data(ev, C2S) == b"req" and data(ev, S2C) == b"bcd"
    assert r.stats.closed_reused == 0


def test_syn_payload_starts_after_isn():
    r = TcpReassembler()
    ev = run(r, [c(1000, b"fast", flags=SYN), c(1005, b"open")])
    assert data(ev) == b"fastopen"
    assert [e.seq for e in ev if isinstance(e, DataReceived)] == [1001, 1005]


# -- out of order, retransmits, overlaps ---------------------------------------------------
def test_out_of_order_is_buffered_until_the_hole_fills():
    r = TcpReassembler()
    handshake(r)
    ev = r.feed(c(1004, b"def", ts=20))
    assert ev == [] and not r.is_quiescent(FID)
    assert r.buffered_bytes(FID) == (3, 0)
    ev = r.feed(c(1001, b"abc", ts=21))
    d = [e for e in ev if isinstance(e, DataReceived)]
    # one event per segment, each with its own ts and seq
    assert [(e.data, e.seq, e.ts_ns) for e in d] == [(b"abc", 1001, 21), (b"def", 1004, 20)]
    assert r.is_quiescent(FID) and r.buffered_bytes(FID) == (0, 0)
    assert r.stats.out_of_order == 1 and r.stats.buffered_bytes == 0


def test_retransmit_of_delivered_bytes_is_dropped():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1001, b"abc"), c(1001, b"abc"), c(1004, b"def"), c(1001, b"abcdef")])
    assert data(ev) == b"abcdef"
    assert r.stats.retransmits == 2


def test_retransmit_of_buffered_bytes_is_dropped():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1004, b"def"), c(1004, b"XYZ"), c(1001, b"abc")])
    assert data(ev) == b"abcdef"  # first copy wins
    assert r.stats.retransmits == 1


def test_partial_overlap_with_delivered_bytes_is_trimmed():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1001, b"abcd"), c(1003, b"XXef", ts=5)])
    d = [e for e in ev if isinstance(e, DataReceived)]
    assert data(ev) == b"abcdef"
    assert (d[-1].data, d[-1].seq, d[-1].ts_ns) == (b"ef", 1005, 5)
    assert r.stats.overlaps == 1


# (segments in arrival order, the stream): the first copy of a byte wins, whoever sent it
OVERLAPS = {
    # buffered "defg" at 1004..1008; then "XXXhij" at 1005..1011 overlaps its tail
    "partial overlap with buffered bytes": (
        [(1004, b"defg"), (1005, b"XXXhij"), (1001, b"abc")],
        b"abcdefghij",
    ),
    "in-order segment over buffered bytes": ([(1004, b"DEF"), (1001, b"abcXYZghi")], b"abcDEFghi"),
    "out-of-order retransmit inside a buffered piece": (
        [(1004, b"defgh"), (1005, b"E"), (1001, b"abc")],
        b"abcdefgh",
    ),
}


@pytest.mark.parametrize("segments, stream", OVERLAPS.values(), ids=OVERLAPS.keys())
def test_overlapping_bytes_keep_their_first_copy(segments, stream):
    r = TcpReassembler()
    handshake(r)
    assert data(run(r, [c(seq, payload) for seq, payload in segments])) == stream


def test_full_overlap_spanning_buffered_pieces_fills_only_the_holes():
    r = TcpReassembler()
    handshake(r)
    # buffered: "c" at 1003 and "f" at 1006; then one segment covers 1002..1009
    ev = run(r, [c(1003, b"c"), c(1006, b"f"), c(1002, b"BXdeYgh"), c(1001, b"a")])
    assert data(ev) == b"aBcdefgh"
    d = [e.data for e in ev if isinstance(e, DataReceived)]
    assert d == [b"a", b"B", b"c", b"de", b"f", b"gh"]


# -- wraparound -------------------------------------------------------------------------
def test_sequence_wraparound_in_order_and_out_of_order():
    r = TcpReassembler()
    isn = MASK - 4  # data starts at 2**32 - 4 and wraps after 4 bytes
    handshake(r, cisn=isn)
    ev = run(
        r,
        [
            c(isn + 1, b"ab"),
            c(isn + 5, b"ef"),  # seq 0 after the wrap, ahead of the hole
            c(isn + 3, b"cd"),  # 2**32 - 2 .. 2**32: fills the hole
            c(isn + 7, b"gh"),
        ],
    )
    d = [e for e in ev if isinstance(e, DataReceived)]
    assert data(ev) == b"abcdefgh"
    assert [e.seq for e in d] == [MASK - 3, MASK - 1, 0, 2]
    assert r.is_quiescent(FID)


def test_streams_longer_than_4_gib_of_sequence_space():
    r = TcpReassembler()
    handshake(r, cisn=0)
    seq, total = 1, 0
    chunk = b"z" * 65536
    for _ in range((1 << 32) // 65536 + 10):  # one full lap of sequence space, and more
        ev = r.feed(c(seq, chunk))
        assert len(ev) == 1 or (len(ev) == 2 and isinstance(ev[0], StreamOpened))
        seq, total = seq + 65536, total + 65536
    assert r.stats.delivered_bytes == total
    ev = run(r, [c(seq + 3, b"late"), c(seq, b"abc")])
    assert data(ev) == b"abclate"


# -- FIN, RST, tombstones -----------------------------------------------------------------
def test_fin_from_both_sides_closes_and_tombstone_drops_late_retransmits():
    r = TcpReassembler(closed_linger_ns=1000)
    handshake(r)
    ev = run(
        r,
        [
            c(1001, b"req", ts=10),
            s(5001, b"resp", ack=1004, ts=11),
            c(1004, flags=FIN | ACK, ack=5005, ts=12),
        ],
    )
    assert not any(isinstance(e, StreamClosed) for e in ev)
    ev = r.feed(s(5005, flags=FIN | ACK, ack=1005, ts=13))
    assert ev == [StreamClosed(ev[0].flow, "fin", 13)]
    assert r.active_flows == 0
    # late retransmits and the final ACK are swallowed by the tombstone
    assert run(r, [c(1005, flags=ACK, ack=5006, ts=14), s(5001, b"resp", ts=15)]) == []
    assert r.stats.late_after_close == 2 and r.active_flows == 0
    # a new SYN on the same 4-tuple starts a new flow at once
    ev = run(r, [c(9000, flags=SYN, ts=20), c(9001, b"new", ts=21)])
    assert kinds(ev) == ["StreamOpened", "DataReceived"] and ev[0].ts_ns == 20


def test_tombstone_expires_after_linger():
    r = TcpReassembler(closed_linger_ns=1000)
    handshake(r)
    run(r, [c(1001, b"x", ts=10), c(1002, flags=FIN | ACK, ts=11), s(5001, flags=FIN, ts=12)])
    assert r.feed(c(1003, b"late", ts=500)) == []
    ev = r.feed(c(7000, b"mid-stream again", ts=1012))
    assert kinds(ev) == ["StreamOpened", "DataReceived"]


def test_expire_drops_tombstones():
    r = TcpReassembler(closed_linger_ns=1000)
    handshake(r)
    run(r, [c(1001, flags=FIN | ACK, ts=10), s(5001, flags=FIN | ACK, ts=11)])
    assert r._tombs
    r.expire(2000)
    assert not r._tombs


def test_fin_with_hole_flushes_with_gaps_including_a_trailing_one():
    r = TcpReassembler()
    handshake(r)
    ev = run(
        r,
        [
            c(1001, b"ab", ts=1),
            c(1005, b"ef", ts=2),  # 1003..1005 lost
            c(1009, flags=FIN, ts=3),  # 1007..1009 lost too, then FIN
            s(5001, flags=FIN, ts=4),
        ],
    )
    assert kinds(ev) == [
        "StreamOpened",
        "DataReceived",
        "GapSkipped",
        "DataReceived",
        "GapSkipped",
        "StreamClosed",
    ]
    assert [e.size for e in ev if isinstance(e, GapSkipped)] == [2, 2]
    assert ev[-1].reason == "fin"


def test_fin_before_its_data_waits_for_the_data():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1004, flags=FIN | ACK), c(1001, b"abc")])
    assert data(ev) == b"abc"
    assert r.is_quiescent(FID)
    ev = r.feed(s(5001, flags=FIN | ACK, ack=1005))
    assert kinds(ev) == ["StreamClosed"]


def test_fin_then_pending_fin_is_not_quiescent():
    r = TcpReassembler()
    handshake(r)
    r.feed(c(1001, b"a"))
    r.feed(c(1004, flags=FIN))
    assert not r.is_quiescent(FID)  # the FIN waits behind a hole
    r.feed(c(1002, b"bc"))
    assert r.is_quiescent(FID)


def test_bytes_after_fin_are_discarded():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1001, b"abc", flags=FIN | ACK), c(1004, b"junk"), c(1001, b"abcdef")])
    assert data(ev) == b"abc"


def test_rst_flushes_and_closes():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1001, b"a"), c(1003, b"c"), s(5001, flags=RST, ts=9)])
    assert kinds(ev) == [
        "StreamOpened",
        "DataReceived",
        "GapSkipped",
        "DataReceived",
        "StreamClosed",
    ]
    assert ev[-1] == StreamClosed(ev[0].flow, "rst", 9)
    assert r.feed(c(1004, b"late", ts=10)) == []


def test_rst_on_unknown_flow_is_ignored():
    r = TcpReassembler()
    assert r.feed(c(1, flags=RST)) == []
    assert r.active_flows == 0 and not r._tombs


def test_new_syn_on_live_flow_replaces_it():
    r = TcpReassembler()
    handshake(r)
    r.feed(c(1001, b"old"))
    ev = run(r, [c(1000, flags=SYN), c(77, flags=SYN, ts=50), c(78, b"new", ts=51)])
    assert kinds(ev) == ["StreamClosed", "StreamOpened", "DataReceived"]
    assert ev[0].reason == "reused" and ev[2].data == b"new"


# -- gaps --------------------------------------------------------------------------------
def test_cap_exceeded_skips_to_next_buffered_segment():
    r = TcpReassembler(max_buffered_bytes_per_direction=10)
    handshake(r)
    ev = run(r, [c(1001, b"a"), c(1005, b"efgh"), c(1009, b"ijkl")])
    assert data(ev) == b"a" and r.buffered_bytes(FID) == (8, 0)
    ev = r.feed(c(1013, b"mnop"))  # 12 > 10: skip the 3-byte hole
    assert kinds(ev) == ["GapSkipped", "DataReceived", "DataReceived", "DataReceived"]
    assert ev[0].size == 3 and ev[0].direction == C2S
    assert data(ev) == b"efghijklmnop"
    assert r.stats.dropped_over_cap == 1 and r.stats.gaps == 1 and r.stats.gap_bytes == 3
    assert r.is_quiescent(FID)


def test_segment_cap_also_bounds_the_buffer():
    r = TcpReassembler(max_buffered_segments_per_direction=2)
    handshake(r)
    ev = run(r, [c(1003, b"c"), c(1005, b"e"), c(1007, b"g")])
    assert kinds(ev) == ["StreamOpened", "GapSkipped", "DataReceived"]
    assert len(r._flows[FID].fwd.buf) == 2


def test_peer_ack_beyond_hole_skips_the_gap():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1001, b"ab"), c(1005, b"ef")])  # 1003..1005 missing
    assert data(ev) == b"ab"
    ev = r.feed(s(5001, flags=ACK, ack=1007))  # the server got everything
    assert kinds(ev) == ["GapSkipped", "DataReceived"]
    assert ev[0].size == 2 and ev[1].data == b"ef"
    assert r.stats.ack_gaps == 1


def test_ack_seen_before_the_out_of_order_data_still_counts():
    r = TcpReassembler()
    handshake(r)
    run(r, [c(1001, b"ab"), s(5001, b"resp", ack=1005)])  # acks 1003..1005 unseen
    ev = r.feed(c(1005, b"ef"))
    assert kinds(ev) == ["GapSkipped", "DataReceived"]


def test_ack_without_waiting_data_does_nothing():
    r = TcpReassembler()
    handshake(r)
    ev = run(r, [c(1001, b"ab"), s(5001, flags=ACK, ack=1010)])
    assert data(ev) == b"ab" and r.stats.gaps == 0


def test_ack_only_skips_up_to_what_was_acked():
    r = TcpReassembler()
    handshake(r)
    run(r, [c(1001, b"a"), c(1010, b"j")])
    ev = r.feed(s(5001, flags=ACK, ack=1005))  # 1002..1005 surely lost; 1005..1010 may come
    assert [(type(e).__name__, getattr(e, "size", None)) for e in ev] == [("GapSkipped", 3)]
    ev = r.feed(c(1005, b"efghi"))
    assert data(ev) == b"efghij"


def test_pure_ack_changes_nothing_else():
    r = TcpReassembler()
    handshake(r)
    assert r.feed(c(1001, flags=ACK, ack=5001)) == []
    assert r.feed(s(5001, flags=ACK, ack=1001)) == []
    assert r.stats.gaps == 0 and r.is_quiescent(FID)


# -- idle, eviction, eof, udp ---------------------------------------------------------------
def test_idle_flows_close_with_flush():
    r = TcpReassembler(idle_timeout_ns=100)
    handshake(r, ts=0)
    run(r, [c(1001, b"a", ts=10), c(1003, b"c", ts=20)])
    assert r.expire(119) == []
    ev = r.expire(120)
    assert kinds(ev) == ["GapSkipped", "DataReceived", "StreamClosed"]
    assert ev[-1].reason == "idle" and r.active_flows == 0
    # no tombstone: later traffic is a new mid-stream flow
    assert kinds(r.feed(c(1004, b"d", ts=130))) == ["StreamOpened", "DataReceived"]


def test_expire_keeps_active_flows():
    r = TcpReassembler(idle_timeout_ns=100)
    handshake(r, ts=0)
    r.feed(c(1001, b"a", ts=10))
    r.feed(c(1002, b"b", ts=90))
    assert r.expire(150) == [] and r.active_flows == 1
    assert kinds(r.expire(190)) == ["StreamClosed"]


def test_unopened_idle_flow_is_dropped_silently():
    r = TcpReassembler(idle_timeout_ns=100)
    handshake(r, ts=0)
    assert r.expire(1000) == [] and r.active_flows == 0


def test_eviction_closes_least_recently_active_flow():
    r = TcpReassembler(max_flows=2)

    def cli(i):
        return (f"10.0.1.{i}", 40000)

    run(r, [mk(cli(1), SRV, 1, b"a", ts=1), mk(cli(2), SRV, 1, b"b", ts=2)])
    r.feed(mk(cli(1), SRV, 2, b"a", ts=3))  # flow 1 is now more recent than flow 2
    ev = r.feed(mk(cli(3), SRV, 1, b"c", ts=4))
    assert kinds(ev) == ["StreamClosed", "StreamOpened", "DataReceived"]
    assert ev[0].reason == "evicted" and ev[0].flow.client_ip == "10.0.1.2"
    assert r.active_flows == 2 and r.stats.evicted == 1
    ev = r.feed(mk(cli(4), SRV, 1, b"d", ts=5))
    assert ev[0].reason == "evicted" and ev[0].flow.client_ip == "10.0.1.1"


def test_close_all_flushes_and_closes_every_flow():
    r = TcpReassembler()
    handshake(r)
    run(r, [c(1001, b"a"), c(1003, b"c"), mk(("10.9.9.9", 1234), SRV, 5, b"x")])
    ev = r.close_all(99)
    assert kinds(ev) == ["GapSkipped", "DataReceived", "StreamClosed", "StreamClosed"]
    assert {e.reason for e in ev if isinstance(e, StreamClosed)} == {"eof"}
    assert r.active_flows == 0 and r.stats.buffered_bytes == 0


def test_udp_is_ignored():
    r = TcpReassembler()
    assert r.feed(c(1, b"dns", transport="udp")) == []
    assert r.stats.udp_ignored == 1 and r.active_flows == 0
    handshake(r)
    assert r.feed(c(1001, b"dns", transport="udp")) == []  # same 4-tuple, still ignored
    assert r.stats.udp_ignored == 2


def test_is_quiescent_for_unknown_flow():
    assert TcpReassembler().is_quiescent("tcp:1.2.3.4:5-6.7.8.9:10")


# -- properties ----------------------------------------------------------------------------
@st.composite
def split_stream(draw, max_len=3000):
    payload = draw(st.binary(min_size=1, max_size=max_len))
    cuts = sorted(
        draw(st.sets(st.integers(1, len(payload) - 1), max_size=60)) if len(payload) > 1 else []
    )
    bounds = [0, *cuts, len(payload)]
    pieces = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    # retransmits and overlapping re-segmentations of random ranges
    extra = draw(
        st.lists(st.tuples(st.integers(0, len(payload) - 1), st.integers(1, 400)), max_size=20)
    )
    pieces += [(a, min(len(payload), a + n)) for a, n in extra]
    order = draw(st.permutations(range(len(pieces))))
    isn = draw(st.one_of(st.integers(0, MASK), st.integers(MASK - 3000, MASK)))
    return payload, [pieces[i] for i in order], isn


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_stream(), st.booleans())
def test_property_any_order_with_duplicates_delivers_exact_stream_once(case, with_fin):
    payload, pieces, isn = case
    r = TcpReassembler(max_buffered_bytes_per_direction=1 << 16)
    events = r.feed(c(isn, flags=SYN, ts=0))
    for i, (a, b) in enumerate(pieces):
        events += r.feed(c(isn + 1 + a, payload[a:b], ts=i + 1))
    if with_fin:
        events += r.feed(c(isn + 1 + len(payload), flags=FIN | ACK, ts=10_000))
        events += r.feed(s(7, flags=FIN | ACK | SYN, ts=10_001))
    else:
        events += r.close_all(10_000)
    assert not any(isinstance(e, GapSkipped) for e in events)
    d = [e for e in events if isinstance(e, DataReceived)]
    assert b"".join(e.data for e in d) == payload
    pos = isn + 1
    for e in d:  # seqs are contiguous mod 2**32
        assert e.seq == pos & MASK
        pos += len(e.data)
    assert isinstance(events[-1], StreamClosed)
    assert events[-1].reason == ("fin" if with_fin else "eof")
    assert sum(isinstance(e, StreamOpened) for e in events) == 1


garbage_segment = st.builds(
    mk,
    st.sampled_from([CLI, SRV, ("10.0.0.3", 80), ("10.0.0.1", 8080)]),
    st.sampled_from([CLI, SRV, ("10.0.0.3", 80)]),
    st.one_of(st.integers(0, MASK), st.integers(990, 1100)),
    st.binary(max_size=64),
    flags=st.integers(0, 0x3F),
    ack=st.one_of(st.integers(0, MASK), st.integers(990, 1100)),
    ts=st.integers(0, 10**6),
    transport=st.sampled_from(["tcp", "tcp", "tcp", "udp"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(garbage_segment, max_size=80),
    st.integers(1, 200),
    st.integers(1, 4),
    st.integers(1, 3),
)
def test_property_garbage_never_raises_and_buffers_stay_capped(segs, cap, max_segs, max_flows):
    r = TcpReassembler(
        max_buffered_bytes_per_direction=cap,
        max_buffered_segments_per_direction=max_segs,
        max_flows=max_flows,
        idle_timeout_ns=10**5,
        closed_linger_ns=10**4,
    )
    opened, closed = {}, set()
    for i, sg in enumerate(segs):
        for e in r.feed(sg):
            check_event(e, opened, closed)
        for conn in r._flows.values():
            for h in (conn.fwd, conn.rev):
                assert h.buf_bytes <= cap and len(h.buf) <= max_segs
                assert h.buf_bytes == sum(len(p[2]) for p in h.buf)
                assert not h.buf or h.buf[0][0] > h.next_abs
        assert len(r._flows) <= max_flows
        assert r.stats.buffered_bytes == sum(
            h.buf_bytes for conn in r._flows.values() for h in (conn.fwd, conn.rev)
        )
        if i % 10 == 9:
            for e in r.expire(sg.ts_ns):
                check_event(e, opened, closed)
    for e in r.close_all(10**7):
        check_event(e, opened, closed)
    assert r.active_flows == 0 and r.stats.buffered_bytes == 0


def check_event(e, opened, closed):
    # a Flow object is made per flow incarnation; keep it alive so its id stays unique
    key = id(e.flow)
    if isinstance(e, StreamOpened):
        assert key not in opened
        opened[key] = e.flow
        return
    assert opened.get(key) is e.flow and key not in closed
    if isinstance(e, StreamClosed):
        closed.add(key)
    elif isinstance(e, GapSkipped):
        assert e.size > 0
    else:
        assert isinstance(e, DataReceived) and e.data


@settings(max_examples=200, deadline=None)
@given(split_stream(max_len=1500), st.randoms(use_true_random=False))
def test_property_quiescent_exactly_when_no_hole(case, rnd):
    payload, pieces, isn = case
    r = TcpReassembler()
    r.feed(c(isn, flags=SYN))
    fid = FID
    seen = bytearray(len(payload))
    for a, b in pieces:
        r.feed(c(isn + 1 + a, payload[a:b]))
        seen[a:b] = b"\1" * (b - a)
        prefix = seen.find(0)
        contiguous = prefix == -1 or not any(seen[prefix:])
        assert r.is_quiescent(fid) == contiguous
    assert r.is_quiescent(fid)
    # a second direction with holes makes it non-quiescent until filled
    r.feed(s(9, flags=SYN | ACK, ack=isn + 1))
    chunks = [b"x" * 5 for _ in range(6)]
    order = list(range(6))
    rnd.shuffle(order)
    for n, i in enumerate(order):
        r.feed(s(10 + 5 * i, chunks[i]))
        assert r.is_quiescent(fid) == (sorted(order[: n + 1]) == list(range(n + 1)))
    assert r.is_quiescent(fid)


def test_random_reordering_of_a_long_stream():
    rnd = random.Random(7)
    payload = bytes(rnd.getrandbits(8) for _ in range(200_000))
    pieces, pos = [], 0
    while pos < len(payload):
        n = rnd.randint(1, 1500)
        pieces.append((pos, min(len(payload), pos + n)))
        pos += n
    # local reordering within a window of 20 segments, plus 5% duplicates
    for i in range(0, len(pieces) - 20, 7):
        window = pieces[i : i + 20]
        rnd.shuffle(window)
        pieces[i : i + 20] = window
    pieces += [pieces[rnd.randrange(len(pieces))] for _ in range(len(pieces) // 20)]
    r = TcpReassembler()
    ev = r.feed(c(MASK - 100_000, flags=SYN))
    for a, b in pieces:
        ev += r.feed(c(MASK - 100_000 + 1 + a, payload[a:b]))
    assert data(ev) == payload and r.is_quiescent(FID)
