"""Decode many captured frames at once and batch them per flow, as columns (numpy).

The common frame - Ethernet, IPv4 without options, TCP or UDP - decodes here a whole
chunk of a capture at a time: a few dozen array operations per chunk instead of several
Python calls per packet. Every other frame (VLAN tags, IPv6, IP options, fragments, short
or malformed frames) is left to the per-packet decoder in `producers.decode`, which counts
why it skipped what it skipped; `decode_ethernet_ipv4` says which those are.

    frames, others = decode_ethernet_ipv4(buf, start, length, ts_ns)
    for columns in flow_batches(buf, frames, ...):   # SegmentColumns, one message each
        ...

Pure: bytes and arrays in, arrays and `SegmentColumns` (or encoded messages) out.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any, TypedDict, Unpack

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from producers.batcher import batch_columns
from producers.decode import Decoder, make_segment
from schemas.records import Segment, flow_id
from schemas.segment_wire import (
    SegmentColumns,
    SegmentHeader,
    SegmentMessage,
    encode_columns,
    encode_message,
)

__all__ = [
    "ChunkBatcher",
    "FlowCut",
    "Frames",
    "decode_ethernet_ipv4",
    "flow_batches",
    "flow_messages",
    "frame_segments",
    "iter_segments",
]

# Ethernet (14) + IPv4 without options (20) + TCP without options (20): the bytes read
# from every frame. Shorter frames (a UDP datagram with a tiny payload) go the slow way.
WINDOW = 54
SEGMENT_OVERHEAD = 64  # bytes a segment counts for beyond its payload when cutting batches
MAX_NAMES = 1 << 16
NS = 1_000_000_000

_I8 = np.int64


@dataclass(frozen=True, slots=True)
class Frames:
    """The frames of a chunk that decoded the common way, one entry per frame, in capture
    order. The payload of frame i is buf[start[i]:end[i]]."""

    index: np.ndarray  # position among the chunk's frames
    ts_ns: np.ndarray
    src: np.ndarray  # IPv4 address as an int
    src_port: np.ndarray
    dst: np.ndarray
    dst_port: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray
    udp: np.ndarray  # bool
    start: np.ndarray
    end: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


# The fields read from every frame, at their offsets in the first WINDOW bytes (network
# byte order; the TCP sequence number and the UDP length overlap: one or the other).
_HEADERS = np.dtype(
    {
        "names": ["etype", "ver_ihl", "tot", "frag", "proto", "src", "dst", "sport", "dport",
                  "seq", "ulen", "ack", "doff", "tcp_flags"],
        "formats": [">u2", "u1", ">u2", ">u2", "u1", ">u4", ">u4", ">u2", ">u2", ">u4", ">u2",
                    ">u4", "u1", "u1"],
        "offsets": [12, 14, 16, 20, 23, 26, 30, 34, 36, 38, 38, 42, 46, 47],
        "itemsize": WINDOW,
    }
)  # fmt: skip


def decode_ethernet_ipv4(
    buf: bytes | memoryview, start: np.ndarray, length: np.ndarray, ts_ns: np.ndarray
) -> tuple[Frames, np.ndarray]:
    """(the Ethernet/IPv4/TCP-or-UDP frames among buf[start[i]:start[i] + length[i]], the
    indices of all the others, for the per-packet decoder). Decodes exactly as
    `producers.decode` does, but never skips: what it does not take, it hands back."""
    a = np.frombuffer(buf, np.uint8)
    start = start.astype(_I8)
    length = length.astype(_I8)
    big = length >= WINDOW
    if len(a) < WINDOW:
        big[:] = False
    h = sliding_window_view(a, WINDOW)[np.where(big, start, 0)].view(_HEADERS)[:, 0]
    tot = h["tot"].astype(_I8)
    proto = h["proto"]
    ip_ok = (
        big
        & (h["etype"] == 0x0800)
        & (h["ver_ihl"] == 0x45)  # version 4, 20-byte header
        & (tot >= 20)
        & (tot <= length - 14)
        & ((h["frag"] & 0x3FFF) == 0)
    )
    data_off = (h["doff"] >> 4).astype(_I8) << 2  # TCP header length
    tcp = ip_ok & (proto == 6) & (tot >= 40) & (data_off >= 20) & (data_off <= tot - 20)
    udp = ip_ok & (proto == 17) & (tot >= 28)
    fast = tcp | udp
    others = np.flatnonzero(~fast)
    take = np.flatnonzero(fast)
    if len(take) < len(fast):  # pick the fields out, not the records: that is slow
        h = {name: h[name][take] for name in ("src", "sport", "dst", "dport", "seq", "ulen",
                                              "ack", "doff", "tcp_flags")}  # fmt: skip
        start, tot, udp, data_off, ts_ns = (x[take] for x in (start, tot, udp, data_off, ts_ns))
    is_tcp = ~udp
    ulen = h["ulen"].astype(_I8)
    ip_end = start + 14 + tot
    udp_end = np.where((ulen >= 8) & (ulen <= tot - 20), start + 34 + ulen, ip_end)
    frames = Frames(
        index=take,
        ts_ns=ts_ns.astype(_I8),
        src=h["src"].astype(_I8),
        src_port=h["sport"].astype(_I8),
        dst=h["dst"].astype(_I8),
        dst_port=h["dport"].astype(_I8),
        seq=h["seq"].astype(_I8) * is_tcp,
        ack=h["ack"].astype(_I8) * is_tcp,
        flags=(((h["doff"] & 0x0F).astype(_I8) << 8) | h["tcp_flags"]) * is_tcp,
        udp=udp,
        start=np.where(udp, start + 42, start + 34 + data_off),
        end=np.where(udp, udp_end, ip_end),
    )
    return frames, others


def _name(names: dict[int, str], ip: int) -> str:
    text = names.get(ip)
    if text is None:
        if len(names) >= MAX_NAMES:
            names.clear()
        text = names[ip] = socket.inet_ntoa(ip.to_bytes(4, "big"))
    return text


class FlowCut(TypedDict):
    """How `flow_batches` and `flow_messages` label the segments and cut the batches."""

    node: str
    source: str
    max_segments: int
    max_bytes: int
    names: dict[int, str]  # address texts, cached between calls


def flow_batches(buf: bytes, frames: Frames, **cut: Unpack[FlowCut]) -> Iterator[SegmentColumns]:
    """The frames grouped per flow (flows in order of their first frame), each flow's
    frames in capture order and cut into batches as `FlowBatcher` cuts them: at
    `max_segments` segments, or once payloads plus 64 bytes a segment reach `max_bytes`."""
    for fid, headers, columns, pieces in _flow_parts(buf, frames, **cut):
        yield SegmentColumns(fid, headers, *columns, b"".join(pieces))


def flow_messages(buf: bytes, frames: Frames, **cut: Unpack[FlowCut]) -> Iterator[SegmentMessage]:
    """`flow_batches`, each batch encoded: its payloads are copied once, into the message."""
    for fid, headers, columns, pieces in _flow_parts(buf, frames, **cut):
        yield SegmentMessage(fid, len(pieces), encode_message(fid, headers, *columns, pieces))


def _flow_parts(
    buf: bytes,
    frames: Frames,
    *,
    node: str,
    source: str,
    max_segments: int,
    max_bytes: int,
    names: dict[int, str],
) -> Iterator[tuple[str, tuple[SegmentHeader, ...], tuple[bytes, ...], list[memoryview]]]:
    """(flow id, headers, the packed columns but payloads, the payloads) per batch."""
    if not len(frames):
        return
    f = frames
    a_end = (f.src << 16) | f.src_port
    b_end = (f.dst << 16) | f.dst_port
    # A flow is its pair of endpoints, either way round, and its transport: 97 bits. Each
    # half numbered among the chunk's values first, so the pair fits one int64 (sorting
    # int64s is many times faster than sorting records).
    _, lo = np.unique(np.minimum(a_end, b_end), return_inverse=True)
    hi_values, hi = np.unique((np.maximum(a_end, b_end) << 1) | f.udp, return_inverse=True)
    _, first, group = np.unique(lo * len(hi_values) + hi, return_index=True, return_inverse=True)
    order = np.argsort(group, kind="stable")  # each flow's frames together, in capture order
    bounds = np.concatenate(([0], np.cumsum(np.bincount(group)))).tolist()
    # Every column put in that order once: a batch is then a slice of each.
    back = (a_end != a_end[first][group])[order].astype("<u2")  # the other way: header 1
    ts_ns = f.ts_ns[order].astype("<i8")
    seq = f.seq[order].astype("<i8")
    ack = f.ack[order].astype("<i8")
    flags = f.flags[order].astype("<i4")
    size = (f.end - f.start)[order]
    payload_end = np.cumsum(size)  # of the chunk's payloads in this order
    cost = np.cumsum(size + SEGMENT_OVERHEAD)
    starts, ends = f.start[order].tolist(), f.end[order].tolist()
    mv = memoryview(buf)
    for g in np.argsort(first, kind="stable").tolist():
        k = int(first[g])
        transport = "udp" if f.udp[k] else "tcp"
        src, sport = _name(names, int(f.src[k])), int(f.src_port[k])
        dst, dport = _name(names, int(f.dst[k])), int(f.dst_port[k])
        fid = flow_id(src, sport, dst, dport, transport)
        lo, n = bounds[g], bounds[g + 1]
        headers = ((src, sport, dst, dport, node, source, transport),)
        if back[lo:n].any():
            headers += ((dst, dport, src, sport, node, source, transport),)
        while lo < n:
            base = int(cost[lo - 1]) if lo else 0
            # FlowBatcher: the segment that reaches max_bytes still joins its batch
            hi = int(np.searchsorted(cost[lo:n], base + max_bytes, side="left")) + lo + 1
            hi = min(hi, lo + max_segments, n)
            before = int(payload_end[lo - 1]) if lo else 0
            columns = (
                back[lo:hi].tobytes(),
                ts_ns[lo:hi].tobytes(),
                seq[lo:hi].tobytes(),
                ack[lo:hi].tobytes(),
                flags[lo:hi].tobytes(),
                (payload_end[lo:hi] - before).astype("<u4").tobytes(),
            )
            pieces = [mv[s:e] for s, e in zip(starts[lo:hi], ends[lo:hi], strict=True)]
            yield fid, headers, columns, pieces
            lo = hi


def frame_segments(
    buf: bytes | memoryview, frames: Frames, *, node: str, source: str, names: dict[int, str]
) -> list[Segment]:
    """The frames as `Segment`s, in order (payloads copied out of `buf` as bytes)."""
    return list(iter_segments(buf, frames, node=node, source=source, names=names))


def iter_segments(
    buf: bytes | memoryview, frames: Frames, *, node: str, source: str, names: dict[int, str]
) -> Iterator[Segment]:
    """`frame_segments`, one at a time: each is built as it is asked for, so a reader that
    yields segments keeps only one alive, not a chunk's worth. Read it to the end before
    `names` changes."""
    f = frames
    src, dst = f.src.tolist(), f.dst.tolist()
    new = ({*src} | {*dst}) - names.keys()
    if len(names) + len(new) > MAX_NAMES:
        names.clear()
        new = {*src} | {*dst}
    for ip in new:
        names[ip] = socket.inet_ntoa(ip.to_bytes(4, "big"))
    text = names.__getitem__
    pieces = map(memoryview(buf).__getitem__, map(slice, f.start.tolist(), f.end.tolist()))
    return map(
        make_segment,
        f.ts_ns.tolist(),
        map(text, src),
        f.src_port.tolist(),
        map(text, dst),
        f.dst_port.tolist(),
        f.seq.tolist(),
        f.ack.tolist(),
        f.flags.tolist(),
        map(bytes, pieces),
        repeat(node),
        repeat(source),
        map(("tcp", "udp").__getitem__, f.udp.tolist()),
    )


class ChunkBatcher:
    """Pcap records, a chunk at a time, to flow batches. `chunk(buf, starts, stats)`
    takes the records starting at `starts` in `buf` (each whole) and updates `stats`
    (packets, segments, skipped) as `producers.pcap` reads do. A chunk whose odd frames
    give segments (IPv6, VLAN, ...) goes segment by segment, so a flow that mixes both
    kinds keeps its order."""

    def __init__(
        self,
        decode: Decoder,
        *,
        endian: str,
        frac_ns: int,
        rec_len: int,
        node: str,
        max_segments: int,
        max_bytes: int,
    ) -> None:
        self._decode = decode
        self._header = np.dtype(endian + "u4")
        self._frac_ns = frac_ns
        self._rec_len = rec_len
        self._node = node
        self._max_segments = max_segments
        self._max_bytes = max_bytes
        self._names: dict[int, str] = {}

    def chunk(
        self, buf: bytes | memoryview, starts: np.ndarray, stats: Any
    ) -> Iterator[SegmentMessage]:
        """The records' segments per flow, one encoded message per batch."""
        frames, odd = self._decode_chunk(buf, starts, stats)
        node, names = self._node, self._names
        if not odd:
            yield from flow_messages(
                buf, frames, node=node, source="pcap", max_segments=self._max_segments,
                max_bytes=self._max_bytes, names=names,
            )  # fmt: skip
            return
        segments = self._in_order(buf, frames, odd)
        for c in batch_columns(segments, self._max_segments, self._max_bytes):
            yield SegmentMessage(c.flow_id, c.count, encode_columns(c))

    def segments(
        self, buf: bytes | memoryview, starts: np.ndarray, stats: Any
    ) -> Iterator[Segment]:
        """The records' segments, in capture order, built one at a time."""
        frames, odd = self._decode_chunk(buf, starts, stats)
        if not odd:
            return iter_segments(buf, frames, node=self._node, source="pcap", names=self._names)
        return iter(self._in_order(buf, frames, odd))

    def _in_order(
        self, buf: bytes | memoryview, frames: Frames, odd: list[tuple[int, Segment]]
    ) -> list[Segment]:
        common = frame_segments(buf, frames, node=self._node, source="pcap", names=self._names)
        if not odd:
            return common
        ordered = sorted([*zip(frames.index.tolist(), common, strict=True), *odd])
        return [seg for _, seg in ordered]

    def _decode_chunk(
        self, buf: bytes | memoryview, starts: np.ndarray, stats: Any
    ) -> tuple[Frames, list[tuple[int, Segment]]]:
        """(the common frames, (index, segment) of each odd frame that gave one)."""
        a = np.frombuffer(buf, np.uint8)
        pos = starts.astype(_I8, copy=False)
        header = sliding_window_view(a, 12)[pos].view(self._header).astype(_I8)
        ts_ns = header[:, 0] * NS + header[:, 1] * self._frac_ns
        start = pos + self._rec_len
        length = header[:, 2]
        frames, others = decode_ethernet_ipv4(buf, start, length, ts_ns)
        stats.packets += len(starts)
        odd: list[tuple[int, Segment]] = []
        if len(others):
            decode = self._decode
            is_bytes = type(buf) is bytes
            for i in others.tolist():
                at, size = int(start[i]), int(length[i])
                # The per-packet decoder slices payloads out of bytes: copy a view's frame.
                frame, at = (buf, at) if is_bytes else (bytes(buf[at : at + size]), 0)
                try:
                    seg = decode(frame, at, at + size, int(ts_ns[i]))
                except Exception:  # a decoder bug must not end the read
                    stats.skipped["decode_error"] = stats.skipped.get("decode_error", 0) + 1
                    seg = None
                if seg is not None:
                    odd.append((i, seg))
        stats.segments += len(frames) + len(odd)
        return frames, odd
