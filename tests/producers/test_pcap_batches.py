"""`read_batches` gives exactly what the per-packet reader gives, batched per flow: the
same segments of each flow in the same order, the same counts and skip reasons, on every
golden capture, cut anywhere, mutated, and in chunks of any size; and `read_segments`,
which decodes Ethernet pcap a chunk at a time too, gives them in the same order."""

from __future__ import annotations

import collections
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers import pcap
from producers.batcher import batch_columns
from producers.pcap import CaptureError, ReadStats, read_batches, read_segments
from producers.pcap_writer import ip_packets
from schemas.records import ACK, PSH, SYN, Segment, segment_flow_id
from schemas.segment_wire import SegmentMessage, decode_segments, segments_of
from tests.producers.test_pcap import (
    FILES,
    GOLDEN,
    GOLDEN_BYTES,
    MUTATIONS,
    garbage_record_length,
    mutated,
    record_boundaries,
)


def packet_by_packet(path: Path, stats: ReadStats) -> Iterator[Segment]:
    """The reference: every record through the per-packet decoder (`_read_pcap`), which
    `read_segments` and `read_batches` do without for Ethernet pcap."""
    src, head, name, layout = pcap._open(path, stats)
    if layout is None:
        return pcap._read_pcapng(src, head, name, "", stats)
    return pcap._read_pcap(src, head, name, "", stats, *layout)


def per_flow_segments(path: Path, read=packet_by_packet) -> tuple[dict, ReadStats]:
    stats = ReadStats()
    flows: dict[str, list[Segment]] = collections.defaultdict(list)
    for seg in read(path, stats=stats):
        flows[segment_flow_id(seg)].append(seg)
    return dict(flows), stats


def per_flow_batches(path: Path, **kw) -> tuple[dict[str, list[Segment]], ReadStats]:
    stats = ReadStats()
    flows: dict[str, list[Segment]] = collections.defaultdict(list)
    for message in read_batches(path, stats=stats, **kw):
        segs = decode_segments(message.value)
        assert segs and all(segment_flow_id(s) == message.flow_id for s in segs)
        assert len(segs) == message.count <= kw.get("max_segments", pcap.MAX_SEGMENTS)
        flows[message.flow_id].extend(segs)
    return dict(flows), stats


def _outcome(per_flow, path: Path, **kw) -> object:
    """(segments per flow, counts), or the CaptureError's message."""
    try:
        flows, stats = per_flow(path, **kw)
    except CaptureError as e:
        return str(e)
    return flows, (stats.packets, stats.segments, stats.skipped)


def assert_same(path: Path, **kw) -> None:
    want = _outcome(per_flow_segments, path)
    assert _outcome(per_flow_batches, path, **kw) == want
    assert _outcome(per_flow_segments, path, read=read_segments) == want
    if not isinstance(want, str):  # read_segments keeps the capture's order across flows
        assert list(read_segments(path)) == list(packet_by_packet(path, ReadStats()))


@pytest.mark.parametrize("name", FILES)
def test_golden_captures_batch_to_the_same_segments(name):
    assert_same(GOLDEN / name)


@pytest.mark.parametrize("name", FILES)
def test_any_chunk_size_gives_the_same_segments(monkeypatch, name):
    monkeypatch.setattr(pcap, "BATCH_CHUNK", 300)  # a few records a chunk
    assert_same(GOLDEN / name, max_segments=2)


@pytest.mark.parametrize(
    "max_segments,max_bytes", [(1, 1 << 20), (3, 1 << 20), (1000, 100), (5, 300)]
)
def test_batches_are_cut_as_the_flow_batcher_cuts_them(max_segments, max_bytes):
    """One chunk holds the whole file: the batches are exactly FlowBatcher's."""
    path = GOLDEN / "eth_lo.pcap"
    want = list(batch_columns(read_segments(path), max_segments, max_bytes))
    got = list(read_batches(path, max_segments=max_segments, max_bytes=max_bytes))
    assert batches_per_flow(got) == batches_per_flow(want)
    assert len(got) > 1


def batches_per_flow(batches: list) -> dict[str, list[list[Segment]]]:
    """Each flow's batches, decoded: from messages or from columns."""
    flows = collections.defaultdict(list)
    for b in batches:
        segs = decode_segments(b.value) if isinstance(b, SegmentMessage) else segments_of(b)
        flows[b.flow_id].append(segs)
    return dict(flows)


def test_truncated_anywhere(tmp_path):
    data = (GOLDEN / "eth_lo.pcap").read_bytes()
    bounds = set(record_boundaries(data))
    path = tmp_path / "cut.pcap"
    for cut in range(24, len(data), 3):
        path.write_bytes(data[:cut])
        assert_same(path)
        _, stats = per_flow_batches(path)
        assert stats.skipped.get("truncated_record", 0) == (0 if cut in bounds else 1), cut


def test_garbage_record_length_stops_the_read(tmp_path):
    got, stats = per_flow_batches(garbage_record_length(tmp_path))
    assert sum(map(len, got.values())) == 1 and stats.skipped == {"bad_record": 1}


def test_errors_come_before_the_first_batch(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(CaptureError, match="not a pcap or pcapng file"):
        read_batches(p)  # not iterated: opening checks the file
    with pytest.raises(CaptureError, match="no such file"):
        read_batches(tmp_path / "nope.pcap")


def _ethernet(ip: bytes, vlan: int | None = None) -> bytes:
    macs = bytes(range(12))
    if vlan is None:
        return macs + b"\x08\x00" + ip
    return macs + struct.pack("!HH", 0x8100, vlan) + b"\x08\x00" + ip


def _with_ip_options(ip: bytes) -> bytes:
    """The IPv4 packet with a 4-byte NOP option (its checksum is not checked)."""
    ihl = (ip[0] & 15) + 1
    total = struct.unpack("!H", ip[2:4])[0] + 4
    return bytes([0x40 | ihl, ip[1]]) + struct.pack("!H", total) + ip[4:20] + b"\x01" * 4 + ip[20:]


def _capture(frames: list[tuple[int, bytes]]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for ts, frame in frames:
        out.append(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def test_a_flow_mixing_common_and_odd_frames_keeps_its_order(tmp_path):
    """Tagged frames and IP options go the per-packet way; their flow still comes out in
    capture order, with the plain frames between them."""
    segs = []
    frames = []
    for k in range(40):
        forward = k % 2 == 0
        a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
        (sip, sport), (dip, dport) = (a, b) if forward else (b, a)
        seg = Segment(k * 1000, sip, sport, dip, dport, 1000 + k, 2000 + k,
                      (SYN if k == 0 else ACK | PSH), b"x" * k)  # fmt: skip
        segs.append(seg)
        (ip,) = ip_packets(seg)
        if k % 5 == 1:
            ip = _with_ip_options(ip)
        frames.append((seg.ts_ns, _ethernet(ip, vlan=7 if k % 7 == 3 else None)))
    frames.insert(10, (10_500, _ethernet(b"\x45" + bytes(5))))  # a truncated packet
    path = tmp_path / "mixed.pcap"
    path.write_bytes(_capture(frames))
    assert_same(path, max_segments=4)
    got, stats = per_flow_batches(path, max_segments=4)
    assert list(got.values()) == [segs]
    assert stats.skipped == {"truncated_packet": 1}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(n for n in GOLDEN_BYTES if n.endswith(".pcap"))), **MUTATIONS)
def test_mutated_captures_batch_to_the_same_segments(fuzz_path, name, edits, cut):
    fuzz_path.write_bytes(mutated(GOLDEN_BYTES[name], edits, cut))
    assert_same(fuzz_path, max_segments=3)
