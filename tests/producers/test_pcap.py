"""producers.pcap: golden captures of real traffic, a differential test against tshark,
truncation, bad input and a mutation fuzz test.

The golden files are made by tests/golden/pcap/make_golden.sh (see there for what each
one holds).
"""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import struct
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.decode import make_segment
from producers.pcap import CaptureError, ReadStats, read_segments
from schemas.records import ACK, SYN, Segment

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pcap"
FILES = sorted(p.name for p in GOLDEN.iterdir() if p.name.endswith((".pcap", ".pcapng", ".gz")))
TSHARK = shutil.which("tshark")

# Files holding the same packets as eth_lo.pcap, with other framing or link headers.
SAME_AS_ETH_LO = [
    "be.pcap",
    "modified.pcap",
    "null.pcap",
    "null_be.pcap",
    "loop.pcap",
    "null_swapped.pcap",
    "raw.pcap",
    "raw12.pcap",
    "raw14.pcap",
    "eth_lo.pcap.gz",
]


def read(path: Path | str, **kw) -> tuple[list[Segment], ReadStats]:
    stats = ReadStats()
    return list(read_segments(path, stats=stats, **kw)), stats


def check_invariants(stats: ReadStats) -> None:
    assert "decode_error" not in stats.skipped, "a decoder raised: that is a bug"
    assert stats.packets == stats.segments + sum(stats.skipped.values())


# --- golden files ----------------------------------------------------------------------


def test_golden_set_is_complete_and_small():
    expected = {
        "eth_lo.pcap",
        "eth_lo_nano.pcap",
        "sll.pcap",
        "sll2.pcap",
        "lo.pcapng",
        "multi_if.pcapng",
        "vlan.pcap",
        "nano_be.pcap",
        "ipv4.pcap",
        "ipv6.pcap",
        "be.pcapng",
        "spb.pcapng",
        "opb.pcapng",
        "snap80.pcap",
        *SAME_AS_ETH_LO,
    }
    assert set(FILES) == expected
    assert sum((GOLDEN / f).stat().st_size for f in FILES) < 200_000


@pytest.mark.parametrize("name", [f for f in FILES if f != "snap80.pcap"])
def test_golden_reads_cleanly(name):
    segs, stats = read(GOLDEN / name, node="node-a")
    check_invariants(stats)
    assert stats.segments == len(segs) > 0
    assert set(stats.skipped) <= {"not_tcp_udp", "not_ip", "ip_fragment"}
    assert all(s.node == "node-a" and s.source == "pcap" for s in segs)
    tcp = [s for s in segs if s.transport == "tcp"]
    udp = [s for s in segs if s.transport == "udp"]
    assert tcp and udp
    assert all(s.seq == s.ack == s.flags == 0 for s in udp)
    assert {s.payload[:4] for s in udp} == {b"a da"}  # "a datagram over IPv4/6"
    assert any(s.payload.startswith(b"GET /hello.txt HTTP/1.1\r\n") for s in tcp)
    assert any(s.payload.startswith(b"hello from a wiretide golden capture") for s in tcp)
    assert any(s.flags & SYN and not s.flags & ACK for s in tcp)
    if name != "ipv4.pcap":  # sent with IPv6 hop-by-hop and destination options headers
        assert any(
            s.payload.startswith(b"GET /hello.txt HTTP/1.0\r\n") and ":" in s.src_ip for s in tcp
        )
    if name != "spb.pcapng":  # Simple Packet Blocks carry no timestamp
        assert all(s.ts_ns > 1_600_000_000 * 10**9 for s in segs)
        assert [s.ts_ns for s in segs] == sorted(s.ts_ns for s in segs) or name.startswith(
            "multi_if"
        )


def test_ipv4_and_ipv6_both_seen():
    segs, _ = read(GOLDEN / "eth_lo.pcap")
    assert {s.src_ip for s in segs} == {"127.0.0.1", "::1"}
    segs, _ = read(GOLDEN / "vlan.pcap")
    assert {s.src_ip for s in segs} == {"10.201.0.1", "10.201.0.2", "fd00:201::1", "fd00:201::2"}


@pytest.mark.parametrize("name", SAME_AS_ETH_LO)
def test_same_packets_whatever_the_framing(name):
    assert read(GOLDEN / name)[0] == read(GOLDEN / "eth_lo.pcap")[0]


def test_raw_ipv4_and_ipv6_link_types_split_the_same_packets():
    ref, _ = read(GOLDEN / "eth_lo.pcap")
    v4, _ = read(GOLDEN / "ipv4.pcap")
    v6, _ = read(GOLDEN / "ipv6.pcap")
    assert v4 == [s for s in ref if ":" not in s.src_ip]
    assert v6 == [s for s in ref if ":" in s.src_ip]


def test_nanosecond_pcap_keeps_nanoseconds():
    segs, _ = read(GOLDEN / "eth_lo_nano.pcap")
    assert any(s.ts_ns % 1000 for s in segs)
    assert read(GOLDEN / "nano_be.pcap")[0] == segs


def test_pcapng_variants():
    ref, _ = read(GOLDEN / "lo.pcapng")
    assert any(s.ts_ns % 1000 for s in ref)  # dumpcap writes if_tsresol 9
    assert read(GOLDEN / "be.pcapng")[0] == ref
    assert read(GOLDEN / "opb.pcapng")[0] == ref
    spb, _ = read(GOLDEN / "spb.pcapng")
    assert [dataclasses.replace(s, ts_ns=0) for s in ref] == spb


def test_multi_interface_pcapng_keeps_each_interface_resolution():
    segs, _ = read(GOLDEN / "multi_if.pcapng")
    # Interface 0 (Ethernet, lo, IPv4) has if_tsresol 2^-20 s, interface 1 (SLL2, any,
    # IPv6) no if_tsresol: microseconds.
    v4 = [s for s in segs if ":" not in s.src_ip]
    v6 = [s for s in segs if ":" in s.src_ip]
    assert v4 and v6
    assert all(s.ts_ns % 1000 == 0 for s in v6)
    assert any(s.ts_ns % 1000 for s in v4)
    assert abs(v4[0].ts_ns - v6[0].ts_ns) < 10**9


def test_vlan_frames_and_fragments():
    segs, stats = read(GOLDEN / "vlan.pcap")
    assert stats.skipped["ip_fragment"] >= 2  # IPv4 and IPv6 fragments of big datagrams
    assert stats.skipped["not_ip"] >= 1  # ARP
    assert any(":" in s.src_ip for s in segs) and any(":" not in s.src_ip for s in segs)


def test_snapshot_length_cut_packets_are_skipped():
    ref, _ = read(GOLDEN / "eth_lo.pcap")
    segs, stats = read(GOLDEN / "snap80.pcap")
    check_invariants(stats)
    assert stats.skipped["truncated_packet"] > 0
    assert set(stats.skipped) <= {"truncated_packet", "not_tcp_udp"}
    assert 0 < len(segs) < len(ref)
    rest = iter(ref)
    assert all(any(s == r for r in rest) for s in segs)  # segs is a subsequence of ref


def test_ethernet_padding_is_not_payload():
    segs, _ = read(GOLDEN / "vlan.pcap")
    # Pure ACKs without TCP options: 58-byte tagged frames padded to 60 on the wire.
    acks = [s for s in segs if s.transport == "tcp" and s.flags == ACK]
    assert acks and all(s.payload == b"" for s in acks)


def test_stats_accumulate_over_runs():
    stats = ReadStats()
    n = len(list(read_segments(GOLDEN / "eth_lo.pcap", stats=stats)))
    list(read_segments(str(GOLDEN / "eth_lo.pcap"), stats=stats))
    assert stats.segments == 2 * n
    assert stats.packets == 2 * (len(record_boundaries((GOLDEN / "eth_lo.pcap").read_bytes())) - 1)


@pytest.mark.parametrize("name", ["eth_lo.pcap", "lo.pcapng", "eth_lo.pcap.gz"])
def test_bytes_read_reaches_the_file_size(name):
    stats = ReadStats()
    list(read_segments(GOLDEN / name, stats=stats))
    assert stats.bytes_read == (GOLDEN / name).stat().st_size


def test_fast_segment_construction_is_the_dataclass():
    args = (1, "10.0.0.1", 1234, "::1", 80, 7, 8, 0x18, b"GET /", "n", "pcap", "tcp")
    fast, plain = make_segment(*args), Segment(*args)
    assert type(fast) is Segment
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.seq = 9  # type: ignore[misc]


# --- differential test against tshark ---------------------------------------------------

TSHARK_FIELDS = [
    "frame.time_epoch",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq",
    "tcp.ack",
    "tcp.flags",
    "tcp.len",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
]
FRAGMENT = "(ip.flags.mf == 1 or ip.frag_offset > 0 or ipv6.fraghdr)"


def tshark(path: Path, display_filter: str, fields: list[str]) -> list[list[str]]:
    cmd = [TSHARK, "-n", "-r", str(path), "-Y", display_filter, "-T", "fields"]
    cmd += ["-E", "occurrence=f", "-E", "separator=|"]
    for opt in (
        "tcp.relative_sequence_numbers:FALSE",
        "tcp.analyze_sequence_numbers:FALSE",
        "ip.defragment:FALSE",
        "ipv6.defragment:FALSE",
    ):
        cmd += ["-o", opt]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("|") for line in out.splitlines()]


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed: no reference to diff with")
@pytest.mark.parametrize("name", FILES)
def test_matches_tshark(name):
    segs, stats = read(GOLDEN / name)
    rows = tshark(
        GOLDEN / name,
        # Packets cut by the snapshot length are skipped ("truncated_packet").
        f"(tcp or udp) and not icmp and not icmpv6 and not {FRAGMENT}"
        " and frame.cap_len == frame.len",
        TSHARK_FIELDS,
    )
    assert len(rows) == len(segs)
    for seg, row in zip(segs, rows, strict=True):
        t, s4, s6, d4, d6, tsp, tdp, seq, ack, flags, tlen, usp, udp_, ulen = row
        assert seg.src_ip == (s4 or s6)
        assert seg.dst_ip == (d4 or d6)
        if t:  # Simple Packet Blocks have no time
            assert seg.ts_ns == int(Decimal(t) * 10**9)
        if seg.transport == "tcp":
            assert (seg.src_port, seg.dst_port) == (int(tsp), int(tdp))
            assert seg.seq == int(seq)
            assert seg.flags == int(flags, 16)
            if seg.flags & ACK or ack:
                assert seg.ack == int(ack)
            assert len(seg.payload) == int(tlen)
        else:
            assert (seg.src_port, seg.dst_port) == (int(usp), int(udp_))
            assert len(seg.payload) == int(ulen) - 8
    fragments = tshark(GOLDEN / name, f"{FRAGMENT} and not icmp and not icmpv6", ["frame.number"])
    assert stats.skipped.get("ip_fragment", 0) == len(fragments)


# --- truncated, empty, foreign and missing files -----------------------------------------


def record_boundaries(data: bytes) -> list[int]:
    """Offsets where records (pcap) or blocks (pcapng) start, plus the end of the file."""
    out = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        e = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        pos = 0
        while pos < len(data):
            out.append(pos)
            pos += struct.unpack_from(e + "I", data, pos + 4)[0]
    else:
        e = "<" if data[:2] in (b"\xd4\xc3", b"\x4d\x3c", b"\x34\xcd") else ">"
        rec = 24 if data[:4] in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34") else 16
        pos = 24
        while pos < len(data):
            out.append(pos)
            pos += rec + struct.unpack_from(e + "I", data, pos + 8)[0]
    return out + [len(data)]


@pytest.mark.parametrize("name,first", [("eth_lo.pcap", 24), ("lo.pcapng", 12)])
def test_truncated_anywhere(tmp_path, name, first):
    data = (GOLDEN / name).read_bytes()
    full, _ = read(GOLDEN / name)
    bounds = set(record_boundaries(data))
    path = tmp_path / name
    for cut in range(first, len(data)):
        path.write_bytes(data[:cut])
        segs, stats = read(path)
        check_invariants(stats)
        assert segs == full[: len(segs)]
        assert stats.skipped.get("truncated_record", 0) == (0 if cut in bounds else 1), cut


def test_truncated_gzip(tmp_path):
    data = (GOLDEN / "eth_lo.pcap.gz").read_bytes()
    full, _ = read(GOLDEN / "eth_lo.pcap")
    path = tmp_path / "cut.pcap.gz"
    for cut in range(30, len(data), 7):
        path.write_bytes(data[:cut])
        try:
            segs, stats = read(path)
        except CaptureError:
            continue  # cut inside the gzip header, or nothing decompressed yet
        check_invariants(stats)
        assert segs == full[: len(segs)]


def test_corrupt_gzip_is_a_capture_error(tmp_path):
    data = bytearray(gzip.compress((GOLDEN / "eth_lo.pcap").read_bytes()))
    data[-8] ^= 0xFF  # CRC-32 of the uncompressed data
    path = tmp_path / "bad.pcap.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="bad.pcap.gz"):
        list(read_segments(path))


def one_line_error(path) -> str:
    with pytest.raises(CaptureError) as e:
        read_segments(path)  # raises before the first segment is asked for
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_not_a_capture(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert "not a pcap or pcapng file" in one_line_error(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    msg = one_line_error(p)
    assert "not a pcap or pcapng file" in msg and "empty" in msg


def test_missing_file_and_directory(tmp_path):
    assert "no such file" in one_line_error(tmp_path / "nope.pcap")
    assert "directory" in one_line_error(tmp_path)


def test_compressed_with_something_else(tmp_path):
    p = tmp_path / "c.pcap.zst"
    p.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(40))
    assert "zstd -d" in one_line_error(p)
    p = tmp_path / "c.pcap.gz"
    p.write_bytes(gzip.compress(b"hello, not a capture"))
    assert "gzip-compressed" in one_line_error(p)


@pytest.mark.parametrize("name,cut", [("eth_lo.pcap", 20), ("lo.pcapng", 8)])
def test_header_cut_short(tmp_path, name, cut):
    p = tmp_path / name
    p.write_bytes((GOLDEN / name).read_bytes()[:cut])
    assert "cut short" in one_line_error(p)


def test_unsupported_link_type_is_counted(tmp_path):
    data = bytearray((GOLDEN / "eth_lo.pcap").read_bytes())
    data[20:24] = (147).to_bytes(4, "little")  # LINKTYPE_USER0
    p = tmp_path / "user0.pcap"
    p.write_bytes(bytes(data))
    segs, stats = read(p)
    records = len(record_boundaries(bytes(data))) - 1
    assert segs == [] and stats.skipped == {"unsupported_linktype": records}


def garbage_record_length(tmp_path: Path) -> Path:
    """eth_lo.pcap with a length no record can have in its second record's header."""
    data = bytearray((GOLDEN / "eth_lo.pcap").read_bytes())
    second = record_boundaries(bytes(data))[1]
    data[second + 8 : second + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    p = tmp_path / "bad.pcap"
    p.write_bytes(bytes(data))
    return p


def test_garbage_record_length_stops_the_read(tmp_path):
    segs, stats = read(garbage_record_length(tmp_path))
    assert len(segs) == 1 and stats.skipped == {"bad_record": 1}


# --- mutation fuzzing ------------------------------------------------------------------

GOLDEN_BYTES = {name: (GOLDEN / name).read_bytes() for name in FILES if not name.endswith(".gz")}

# `mutated`'s arguments: bytes overwritten at fractions of the length, then a cut.
MUTATIONS = {
    "edits": st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=24
    ),
    "cut": st.none() | st.floats(0, 1),
}


def mutated(data: bytes, edits: list[tuple[float, int]], cut: float | None) -> bytes:
    out = bytearray(data)
    for where, value in edits:
        out[int(where * len(out))] = value
    if cut is not None:
        out = out[: int(cut * len(out))]
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(GOLDEN_BYTES)), **MUTATIONS)
def test_mutated_files_never_raise_anything_but_capture_error(fuzz_path, name, edits, cut):
    fuzz_path.write_bytes(mutated(GOLDEN_BYTES[name], edits, cut))
    try:
        segs, stats = read(fuzz_path)
    except CaptureError as e:
        assert "\n" not in str(e)
        return
    check_invariants(stats)
    assert all(isinstance(s, Segment) for s in segs)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(GOLDEN_BYTES)),
    junk=st.binary(min_size=0, max_size=3000),
)
def test_random_bytes_after_a_valid_header(fuzz_path, name, junk):
    data = GOLDEN_BYTES[name]
    head = record_boundaries(data)[1] if data.startswith(b"\x0a\x0d\x0d\x0a") else 24
    fuzz_path.write_bytes(data[:head] + junk)
    segs, stats = read(fuzz_path)
    check_invariants(stats)
