"""DNS messages: parse one (a UDP datagram or a TCP frame), and frame TCP streams (each
message behind a 2-byte length; several per segment or one split over many)."""

from __future__ import annotations

import struct
from typing import Any

from streams.dissect.base import DissectError
from streams.dissect.dns.events import DnsMessage, Question
from streams.dissect.dns.names import class_name, read_name, type_name
from streams.dissect.dns.rdata import render

HEADER = 12
MAX_RECORDS = 256  # records rendered per message; the rest are counted, not shown
_HEADER = struct.Struct("!6H")
_QUESTION = struct.Struct("!HH")
_RR = struct.Struct("!HHIH")
_OPT = 41


def parse_header(msg: bytes) -> tuple[int, int, int, int, int, int]:
    if len(msg) < HEADER:
        raise DissectError(f"DNS message of {len(msg)} bytes is shorter than its header")
    return _HEADER.unpack_from(msg, 0)


def parse_questions(msg: bytes, count: int) -> tuple[tuple[Question, ...], int]:
    off = HEADER
    out = []
    for _ in range(count):
        name, off = read_name(msg, off)
        if off + 4 > len(msg):
            raise DissectError("question runs past the end of the message")
        qtype, qclass = _QUESTION.unpack_from(msg, off)
        off += 4
        out.append(Question(name, qtype, qclass))
    return tuple(out), off


def _record(msg: bytes, off: int, keep: bool) -> tuple[dict[str, Any] | None, int, int]:
    """(rendered record or None when not kept, offset after it, extended rcode bits)."""
    name, off = read_name(msg, off)
    if off + 10 > len(msg):
        raise DissectError("resource record runs past the end of the message")
    rtype, rclass, ttl, rdlen = _RR.unpack_from(msg, off)
    off += 10
    end = off + rdlen
    if end > len(msg):
        raise DissectError("record data runs past the end of the message")
    ext = 0
    if rtype == _OPT:
        ext = ttl >> 24
        if not keep:
            return None, end, ext
        rec: dict[str, Any] = {
            "name": name,
            "type": "OPT",
            "udp_payload": rclass,
            "ext_rcode": ext,
            "version": (ttl >> 16) & 0xFF,
            "do": bool(ttl & 0x8000),
            "data": msg[off:end].hex(),
        }
        return rec, end, ext
    if not keep:
        return None, end, 0
    rec = {"name": name, "type": type_name(rtype), "ttl": ttl, "data": render(msg, rtype, off, end)}
    if rclass != 1:
        rec["class"] = class_name(rclass)
    return rec, end, 0


def parse_message(msg: bytes) -> DnsMessage:
    """Parse a whole message; raises `DissectError` on bytes that are not DNS. A message
    with the TC bit keeps the records that arrived whole."""
    txid, flags, qd, an, ns, ar = parse_header(msg)
    questions, off = parse_questions(msg, qd)
    cut = bool(flags & 0x0200)
    truncated = False
    rcode = flags & 0xF
    sections: list[tuple[dict[str, Any], ...]] = []
    kept = 0
    for count in (an, ns, ar):
        records: list[dict[str, Any]] = []
        for _ in range(count):
            if truncated:
                break
            try:
                rec, off, ext = _record(msg, off, kept < MAX_RECORDS)
            except DissectError:
                if not cut:
                    raise
                truncated = True  # a TC message may end mid-record: keep what came whole
                break
            if ext:
                rcode |= ext << 4
            if rec is None:
                truncated = True
            else:
                records.append(rec)
                kept += 1
        sections.append(tuple(records))
    return DnsMessage(
        txid, flags, questions, (an, ns, ar), tuple(sections), rcode, len(msg), truncated
    )


def plausible(msg: bytes) -> float:
    """How much the start of `msg` looks like a DNS message: 1.0 when all of it parses, 0.7
    when the header and first question parse but the rest is missing, 0.5 when a sound
    header is followed by a question cut short, else 0.0."""
    try:
        _txid, flags, qd, an, ns, ar = parse_header(msg)
    except DissectError:
        return 0.0
    opcode = (flags >> 11) & 0xF
    if opcode not in (0, 1, 2, 4, 5) or flags & 0x0040:  # unknown opcode, or the Z bit
        return 0.0
    if not flags & 0x8000 and (qd != 1 or an > 16 or ns > 16 or ar > 16) and opcode != 5:
        return 0.0  # a query asks one question and carries few records
    if qd > 16 or an + ns + ar > 4096 or qd == 0 and not flags & 0x8000:
        return 0.0
    try:
        parse_message(msg)
        return 1.0  # the usual case first: its first question parsed on the way
    except DissectError:
        pass
    try:
        parse_questions(msg, min(qd, 1))
    except DissectError as e:
        return 0.5 if "past the end" in str(e) else 0.0
    return 0.7


class TcpFramer:
    """Cuts one direction of a DNS-over-TCP stream into messages. Holds at most one
    unfinished message (< 64 KiB + 2 bytes)."""

    __slots__ = ("buf", "start_seq", "start_ts", "lost")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.start_seq = 0
        self.start_ts = 0
        self.lost = False  # after a gap: waiting for a segment that starts a message

    def feed(self, data: bytes, ts: int, seq: int) -> list[tuple[bytes, int, int, int]]:
        """Whole messages completed by `data`: (message without prefix, seq, first ts,
        last ts). Raises `DissectError` on a length prefix too short for a DNS header."""
        if self.lost:
            if len(data) < 2 + HEADER or plausible(data[2 : 2 + 0xFFFF]) < 0.7:
                return []  # still not at a message boundary: skip these bytes
            self.lost = False
        buf = self.buf
        if not buf:
            self.start_seq, self.start_ts = seq, ts
        buf += data
        out = []
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if size < HEADER:
                self.buf = bytearray()
                self.lost = True
                raise DissectError(f"TCP length prefix {size} is shorter than a DNS header")
            if len(buf) < size + 2:
                break
            out.append((bytes(buf[2 : size + 2]), self.start_seq, self.start_ts, ts))
            del buf[: size + 2]
            self.start_seq = (self.start_seq + size + 2) & 0xFFFFFFFF
            self.start_ts = ts  # what is left began in this segment
        return out

    def gap(self) -> None:
        self.buf = bytearray()
        self.lost = True

    def reset(self) -> None:
        self.buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self.buf)


class Datagrams:
    """The framer of DNS over UDP: each datagram is one whole message."""

    buffered = 0

    def feed(self, data: bytes, ts: int, seq: int) -> list[tuple[bytes, int, int, int]]:
        return [(data, seq, ts, ts)]

    def gap(self) -> None:
        pass  # datagrams are never cut

    def reset(self) -> None:
        pass
