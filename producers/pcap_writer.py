"""Segments back into a capture file: sans-IO, bytes out.

Each `Segment` becomes one raw IP packet (LINKTYPE_RAW, 101): an IPv4 or IPv6 header and
a TCP or UDP header synthesized around the captured payload, carrying the segment's real
ports, sequence and acknowledgement numbers and flags, with valid checksums. TLS
plaintext segments (transport "tls") are written as TCP, since that is the connection
they came from; in pcapng each such packet carries a comment saying so.

    writer = PcapWriter()            # or PcapngWriter(comment="...")
    out.write(writer.header())
    for seg in segments:
        out.write(writer.packets(seg))

    out.writelines(capture_file(segments))   # the same, segments put in time order first

Timestamps keep nanoseconds (the nanosecond pcap magic; if_tsresol 9 in pcapng), so a
replay of the file sees exactly the times the pipeline saw. A payload too long for one
IP packet is split into several TCP segments at consecutive sequence numbers (UDP: cut).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator

from schemas.records import Segment

LINKTYPE_RAW = 101
SNAPLEN = 262_144
TLS_COMMENT = "TLS plaintext (captured from the process, not from the wire)"
_NS = 1_000_000_000
_MAX_IP = 65_535  # IPv4 total length / IPv6 payload length
_PCAP_NS_MAGIC = 0xA1B23C4D
_PROTO_TCP, _PROTO_UDP = 6, 17


def _checksum(*parts: bytes) -> int:
    """The Internet checksum (RFC 1071) of the concatenated parts."""
    data = b"".join(parts)
    if len(data) % 2:
        data += b"\x00"
    words = array("H", data)
    if sys.byteorder == "little":
        words.byteswap()  # sum big-endian words
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text.split("%", 1)[0])  # a zone id has no wire form


def ip_packets(seg: Segment) -> list[bytes]:
    """The raw IP packets that carry `seg` (one unless the payload is too long)."""
    src, dst = _address(seg.src_ip), _address(seg.dst_ip)
    if src.version != dst.version:
        raise ValueError(f"segment mixes IPv{src.version} and IPv{dst.version} addresses")
    ip_header = 20 if src.version == 4 else 0  # IPv6's header is outside its length
    if seg.transport == "udp":
        room = _MAX_IP - ip_header - 8
        return [_ip(src, dst, _PROTO_UDP, _udp(seg, src, dst, seg.payload[:room]))]
    room = _MAX_IP - ip_header - 20
    payload = seg.payload
    if len(payload) <= room:
        return [_ip(src, dst, _PROTO_TCP, _tcp(seg, src, dst, seg.seq, payload))]
    out = []
    for start in range(0, len(payload), room):
        seq = (seg.seq + start) & 0xFFFFFFFF
        piece = payload[start : start + room]
        out.append(_ip(src, dst, _PROTO_TCP, _tcp(seg, src, dst, seq, piece)))
    return out


def _pseudo(src, dst, proto: int, length: int) -> bytes:  # noqa: ANN001 - ip addresses
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, proto)


def _tcp(seg: Segment, src, dst, seq: int, payload: bytes) -> bytes:  # noqa: ANN001
    offset_ns = (5 << 4) | ((seg.flags >> 8) & 0x01)  # 20-byte header; the NS flag bit
    head = struct.pack(
        "!HHIIBBHHH",
        seg.src_port,
        seg.dst_port,
        seq & 0xFFFFFFFF,
        seg.ack & 0xFFFFFFFF,
        offset_ns,
        seg.flags & 0xFF,
        65535,
        0,
        0,
    )
    check = _checksum(_pseudo(src, dst, _PROTO_TCP, len(head) + len(payload)), head, payload)
    return head[:16] + struct.pack("!H", check) + head[18:] + payload


def _udp(seg: Segment, src, dst, payload: bytes) -> bytes:  # noqa: ANN001
    length = 8 + len(payload)
    head = struct.pack("!HHHH", seg.src_port, seg.dst_port, length, 0)
    check = _checksum(_pseudo(src, dst, _PROTO_UDP, length), head, payload) or 0xFFFF
    return head[:6] + struct.pack("!H", check) + payload


def _ip(src, dst, proto: int, body: bytes) -> bytes:  # noqa: ANN001
    if src.version == 4:
        # version 4, 20-byte header; don't-fragment; TTL 64; checksum filled in below
        fields = (0x45, 0, 20 + len(body), 0, 0x4000, 64, proto, 0, src.packed, dst.packed)
        head = struct.pack("!BBHHHBBH4s4s", *fields)
        return head[:10] + struct.pack("!H", _checksum(head)) + head[12:] + body
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), proto, 64, src.packed, dst.packed) + body


class PcapWriter:
    """Classic pcap, nanosecond timestamps, raw IP packets."""

    def header(self) -> bytes:
        return struct.pack("<IHHiIII", _PCAP_NS_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW)

    def packets(self, seg: Segment) -> bytes:
        sec, ns = divmod(seg.ts_ns, _NS)
        return b"".join(struct.pack("<IIII", sec, ns, len(p), len(p)) + p for p in ip_packets(seg))


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


_END_OF_OPTIONS = struct.pack("<HH", 0, 0)
_OPT_COMMENT = 1


class PcapngWriter:
    """pcapng: one section, one raw-IP interface with nanosecond timestamps; the section
    may carry a comment, and every TLS plaintext packet says what it is."""

    def __init__(self, comment: str = "") -> None:
        self.comment = comment

    def header(self) -> bytes:
        options = b""
        if self.comment:
            options = _option(_OPT_COMMENT, self.comment.encode()) + _END_OF_OPTIONS
        section = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + options)
        tsresol = _option(9, bytes([9])) + _END_OF_OPTIONS
        interface = _block(1, struct.pack("<HHI", LINKTYPE_RAW, 0, SNAPLEN) + tsresol)
        return section + interface

    def packets(self, seg: Segment) -> bytes:
        options = b""
        if seg.transport == "tls":
            options = _option(_OPT_COMMENT, TLS_COMMENT.encode()) + _END_OF_OPTIONS
        high, low = divmod(seg.ts_ns, 1 << 32)
        out = []
        for p in ip_packets(seg):
            body = struct.pack("<IIIII", 0, high, low, len(p), len(p))
            out.append(_block(6, body + p + b"\x00" * (-len(p) % 4) + options))
        return b"".join(out)


def writer_for(path: str) -> PcapWriter | PcapngWriter:
    """pcapng for a `.pcapng` name, classic pcap otherwise."""
    return PcapngWriter() if path.lower().endswith(".pcapng") else PcapWriter()


def capture_file(
    segments: Iterable[Segment], writer: PcapWriter | PcapngWriter | None = None
) -> Iterator[bytes]:
    """A whole capture file, header first, the segments in time order (a stable sort:
    the segments of a flow that share a time keep their order)."""
    writer = writer or PcapWriter()
    yield writer.header()
    for seg in sorted(segments, key=lambda s: s.ts_ns):
        yield writer.packets(seg)
