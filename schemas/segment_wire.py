"""The segments topic's message, version 2: a flow's segments as columns.

Version 1 (SegmentBatch.avsc) is one Avro record per segment, which Python encodes at ~4 us
and decodes at ~5 us a segment, varint by varint. Version 2 (SegmentColumns.avsc) is still
Avro - any Avro reader with the .avsc decodes it - but the per-segment numbers sit in
packed little-endian `bytes` fields and the payloads back to back, so a batch costs a few
C calls plus one object per segment. The header fields a flow's segments share (addresses,
ports, node, source, transport) are written once per distinct value, usually once per
direction.

    data = encode_segments(flow, segments)        # or encode_columns(SegmentColumns(...))
    decode_segments(data) == segments
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter

from schemas.codec import CodecError, avro_bytes, avro_long, codec
from schemas.records import INT32, Segment, record_maker

__all__ = [
    "HEADER",
    "SegmentColumns",
    "SegmentMessage",
    "columns_from_segments",
    "decode_columns",
    "decode_segments",
    "encode_columns",
    "encode_message",
    "encode_segments",
    "segments_of",
]

HEADER = codec("SegmentColumns").header  # single-object magic + fingerprint
MAX_HEADERS = 1 << 16  # header_index is a uint16

# (src_ip, src_port, dst_ip, dst_port, node, source, transport)
SegmentHeader = tuple[str, int, str, int, str, str, str]

_BIG_ENDIAN = sys.byteorder == "big"
_make_segment = record_maker(Segment)
_header_of = attrgetter("src_ip", "src_port", "dst_ip", "dst_port", "node", "source", "transport")


@dataclass(frozen=True, slots=True)
class SegmentColumns:
    """One message's worth of a flow's segments; each column packed little-endian."""

    flow_id: str
    headers: tuple[SegmentHeader, ...]
    header_index: bytes  # uint16 per segment
    ts_ns: bytes  # int64 per segment
    seq: bytes  # int64
    ack: bytes  # int64
    flags: bytes  # int32
    payload_end: bytes  # uint32: end of each payload in `payloads`
    payloads: bytes

    @property
    def count(self) -> int:
        return len(self.ts_ns) >> 3


def _packed(code: str, values: Sequence[int]) -> bytes:
    """Little-endian machine ints; OverflowError/TypeError for what does not fit."""
    a = array(code, values)
    if _BIG_ENDIAN:
        a.byteswap()
    return a.tobytes()


def _unpacked(code: str, data: bytes) -> list[int]:
    a = array(code)
    a.frombytes(data)
    if _BIG_ENDIAN:
        a.byteswap()
    return a.tolist()


def columns_from_segments(flow: str, segments: Sequence[Segment]) -> SegmentColumns:
    """The batch as columns. Raises OverflowError for a number its column cannot hold
    (ports and flags are Avro ints, the rest int64) and TypeError for one that is not an
    int, as the caller may want to fit the numbers and try again."""
    index: dict[tuple, int] = {}
    headers: list[SegmentHeader] = []
    header_index = []
    for seg in segments:
        h = _header_of(seg)
        k = index.get(h)
        if k is None:
            k = index[h] = len(headers)
            headers.append(h)
        header_index.append(k)
    if len(headers) > MAX_HEADERS:
        raise OverflowError(f"{len(headers)} distinct segment headers in one batch")
    low, high = INT32
    for h in headers:
        for port in (h[1], h[3]):
            if type(port) is not int:
                raise TypeError(f"a port is a {type(port).__name__}, not an int")
            if not low <= port <= high:
                raise OverflowError(port)
    payloads = [seg.payload for seg in segments]
    ends = []
    end = 0
    for p in payloads:
        if type(p) is not bytes:
            raise TypeError(f"a payload is a {type(p).__name__}, not bytes")
        end += len(p)
        ends.append(end)
    return SegmentColumns(
        flow,
        tuple(headers),
        _packed("H", header_index),
        _packed("q", [seg.ts_ns for seg in segments]),
        _packed("q", [seg.seq for seg in segments]),
        _packed("q", [seg.ack for seg in segments]),
        _packed("i", [seg.flags for seg in segments]),
        _packed("I", ends),
        b"".join(payloads),
    )


# ---------------------------------------------------------------------------- writing


def _str(s: str) -> bytes:
    return avro_bytes(s.encode())


def encode_columns(c: SegmentColumns) -> bytes:
    """The message: `HEADER` + the SegmentColumns record (one block for the array, as
    fastavro writes it)."""
    return encode_message(
        c.flow_id, c.headers, c.header_index, c.ts_ns, c.seq, c.ack, c.flags, c.payload_end,
        (c.payloads,),
    )  # fmt: skip


def encode_message(
    flow: str,
    headers: Sequence[SegmentHeader],
    header_index: bytes,
    ts_ns: bytes,
    seq: bytes,
    ack: bytes,
    flags: bytes,
    payload_end: bytes,
    payloads: Sequence[bytes | memoryview],
) -> bytes:
    """`encode_columns` of the columns given one by one, the payloads in pieces: they are
    copied once, straight into the message."""
    parts: list[bytes | memoryview] = [HEADER, _str(flow)]
    if headers:
        parts.append(avro_long(len(headers)))
        for src_ip, src_port, dst_ip, dst_port, node, source, transport in headers:
            parts += (_str(src_ip), avro_long(src_port), _str(dst_ip), avro_long(dst_port))
            parts += (_str(node), _str(source), _str(transport))
    parts.append(b"\x00")
    for column in (header_index, ts_ns, seq, ack, flags, payload_end):
        parts.append(avro_long(len(column)))
        parts.append(column)
    parts.append(avro_long(sum(map(len, payloads))))
    parts += payloads
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class SegmentMessage:
    """One encoded segments-topic message: what a capture reader hands the publisher."""

    flow_id: str
    count: int  # segments in it
    value: bytes


def encode_segments(flow: str, segments: Sequence[Segment]) -> bytes:
    return encode_columns(columns_from_segments(flow, segments))


# ---------------------------------------------------------------------------- reading


class _Reader:
    """Avro primitives over one message; IndexError when it ends too soon."""

    __slots__ = ("d", "p")

    def __init__(self, d: bytes, p: int) -> None:
        self.d = d
        self.p = p

    def long(self) -> int:
        d, p = self.d, self.p
        b = d[p]
        n = b & 127
        shift = 7
        while b > 127:
            p += 1
            b = d[p]
            n |= (b & 127) << shift
            shift += 7
            if shift > 70:
                raise CodecError("corrupt SegmentColumns record: varint longer than 64 bits")
        self.p = p + 1
        return (n >> 1) ^ -(n & 1)

    def int32(self) -> int:
        v = self.long()
        if not INT32[0] <= v <= INT32[1]:
            raise CodecError(f"corrupt SegmentColumns record: int out of range ({v})")
        return v

    def bytes(self) -> bytes:
        n = self.long()
        if n < 0:
            raise CodecError("corrupt SegmentColumns record: negative length")
        p = self.p
        end = p + n
        if end > len(self.d):
            raise IndexError
        self.p = end
        return self.d[p:end]

    def str(self) -> str:
        return self.bytes().decode()


def decode_columns(data: bytes) -> SegmentColumns:
    """The columns of a version 2 message; CodecError when it is not a well-formed one."""
    if data[:10] != HEADER:
        raise CodecError(f"not a SegmentColumns message ({bytes(data[:10]).hex()})")
    r = _Reader(bytes(data), 10)
    try:
        flow = r.str()
        headers: list[SegmentHeader] = []
        while n := r.long():
            if n < 0:  # a block with its byte size: the size is not needed
                n = -n
                r.long()
            for _ in range(n):
                headers.append((r.str(), r.int32(), r.str(), r.int32(), r.str(), r.str(), r.str()))
        cols = SegmentColumns(flow, tuple(headers), *(r.bytes() for _ in range(7)))
    except (IndexError, UnicodeDecodeError) as exc:
        raise CodecError(f"corrupt SegmentColumns record: {type(exc).__name__}") from None
    if r.p != len(r.d):
        raise CodecError(f"{len(r.d) - r.p} trailing bytes after SegmentColumns record")
    n = len(cols.ts_ns) >> 3
    sizes = (len(cols.header_index), len(cols.ts_ns), len(cols.seq), len(cols.ack))
    if sizes != (2 * n, 8 * n, 8 * n, 8 * n) or (len(cols.flags), len(cols.payload_end)) != (
        4 * n,
        4 * n,
    ):
        raise CodecError("corrupt SegmentColumns record: columns of different lengths")
    return cols


def segments_of(c: SegmentColumns) -> list[Segment]:
    """The batch's segments, in order. CodecError when the columns contradict each other."""
    n = c.count
    if not n:
        return []
    ends = _unpacked("I", c.payload_end)
    starts = [0, *ends[:-1]]
    if ends[-1] != len(c.payloads) or any(map(int.__gt__, starts, ends)):
        raise CodecError("corrupt SegmentColumns record: payload ends out of order")
    which = _unpacked("H", c.header_index)
    headers = c.headers
    if max(which) >= len(headers):
        raise CodecError("corrupt SegmentColumns record: header index out of range")
    payloads = c.payloads
    payload = [payloads[s:e] for s, e in zip(starts, ends, strict=True)]
    columns = list(zip(*headers, strict=True))  # field -> value per header
    per_segment = []
    for values in columns:
        if len(set(values)) == 1:
            per_segment.append(repeat(values[0], n))
        else:
            per_segment.append(map(values.__getitem__, which))
    src_ip, src_port, dst_ip, dst_port, node, source, transport = per_segment
    return list(
        map(
            _make_segment,
            _unpacked("q", c.ts_ns),
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            _unpacked("q", c.seq),
            _unpacked("q", c.ack),
            _unpacked("i", c.flags),
            payload,
            node,
            source,
            transport,
        )
    )


def decode_segments(data: bytes) -> list[Segment]:
    return segments_of(decode_columns(data))
