"""MySQL / MariaDB client-server protocol: packet framing per direction and decoders.

A packet is a 3-byte little-endian payload length, a sequence id, and the payload; a
payload of exactly 0xFFFFFF bytes continues in the next packet. Payloads longer than the
cap keep their head and the rest is skipped without buffering.
"""

from __future__ import annotations

import struct
from datetime import date

from streams.dissect.base import DissectError
from streams.dissect.common import SegmentBuffer
from streams.dissect.mysql.events import Packet

DEFAULT_MAX_PAYLOAD = 256 * 1024
_MAX_PIECE = 0xFFFFFF

# Capability flags.
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_COMPRESS = 0x20
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_CONNECT_ATTRS = 0x100000
CLIENT_PLUGIN_AUTH_LENENC = 0x200000
CLIENT_DEPRECATE_EOF = 0x1000000
# Server status flags.
SERVER_MORE_RESULTS_EXISTS = 0x8
SERVER_STATUS_CURSOR_EXISTS = 0x40


# Empty packets in a row before the bytes are taken for junk: MySQL sends one only to end
# LOCAL INFILE data or a 16 MiB piece, and a run of zeros would be a packet every 4 bytes.
MAX_EMPTY_RUN = 64


class Framer(SegmentBuffer):
    """Bytes of one direction in, whole `Packet`s out. Any 4 bytes are a header, so junk
    shows up as packets the stitcher does not understand; only a run of empty packets
    raises `DissectError`."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        super().__init__()
        self.max_payload = max_payload
        self.more = False  # the packet being skipped is followed by a continuation
        # A logical packet being assembled from 16 MiB pieces (or cut at the cap).
        self.parts: list[bytes] = []
        self.kept = 0
        self.first: tuple[int, int, int] | None = None  # seq_id, seq, ts of its first piece
        self.size = 0
        self.truncated = False  # its payload is cut at the cap
        self.empty_run = 0

    def reset(self) -> None:
        super().reset()
        self.first = None
        self.parts = []
        self.kept = 0

    @property
    def idle(self) -> bool:
        return super().idle and self.first is None

    @property
    def buffered(self) -> int:
        return len(self.buf) + self.kept

    def _cut_skipped(self, ts: int, out: list[Packet]) -> None:
        if not self.more:
            out.append(self._finish(ts))

    def _frames(self, buf: bytearray, old: int, ts: int, out: list[Packet]) -> int:
        pos, end = 0, len(buf)
        while end - pos >= 4:
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            start_ts = self.ts if pos < old else ts
            if self.first is None:
                self.first = (buf[pos + 3], (self.seq + pos) & 0xFFFFFFFF, start_ts)
            more = length == _MAX_PIECE
            if length:
                self.empty_run = 0
            else:
                self.empty_run += 1
                if self.empty_run > MAX_EMPTY_RUN:
                    raise DissectError(f"{MAX_EMPTY_RUN} empty MySQL packets in a row")
            room = self.max_payload - self.kept
            if 4 + length <= end - pos:
                self._keep(bytes(buf[pos + 4 : pos + 4 + min(length, room)]), length > room)
                self.size += 4 + length
                pos += 4 + length
                if not more:
                    out.append(self._finish(ts))
                continue
            if length > room and end - pos >= 4 + room:  # cut: keep the head, skip the rest
                self._keep(bytes(buf[pos + 4 : pos + 4 + room]), True)
                self.size += 4 + length
                self.skip = 4 + length - (end - pos)
                self.more = more
                pos = end
            break
        return pos

    def _keep(self, piece: bytes, cut: bool) -> None:
        if piece:
            self.parts.append(piece)
            self.kept += len(piece)
        self.truncated = self.truncated or cut

    def _finish(self, ts: int) -> Packet:
        assert self.first is not None
        seq_id, seq, start_ts = self.first
        payload = b"".join(self.parts)
        packet = Packet(seq_id, payload, seq, start_ts, ts, self.size, self.truncated)
        self.parts, self.kept, self.first, self.size, self.truncated = [], 0, None, 0, False
        return packet


# ------------------------------------------------------------------ decoders


class Reader:
    """A cursor over a payload; reads past the end raise IndexError / struct.error."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def int(self, size: int) -> int:
        end = self.pos + size
        if end > len(self.data):
            raise IndexError("payload ends inside an integer")
        value = int.from_bytes(self.data[self.pos : end], "little")
        self.pos = end
        return value

    def lenenc(self) -> int | None:
        first = self.int(1)
        if first < 0xFB:
            return first
        if first == 0xFB:
            return None  # NULL in a text row
        return self.int({0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first, 0) or _bad(first))

    def bytes(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise IndexError("payload ends inside a string")
        value = self.data[self.pos : end]
        self.pos = end
        return value

    def lenenc_bytes(self) -> bytes | None:
        size = self.lenenc()
        return None if size is None else self.bytes(size)

    def cstring(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            end = len(self.data)
        value = self.data[self.pos : end]
        self.pos = end + 1
        return value

    def rest(self) -> bytes:
        value = self.data[self.pos :]
        self.pos = len(self.data)
        return value

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _bad(first: int) -> int:
    raise ValueError(f"bad length-encoded integer prefix {first:#x}")


def text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "replace")


def greeting(payload: bytes) -> dict:
    """Server greeting (protocol 10): version, connection id, capabilities, auth plugin."""
    r = Reader(payload, 1)
    version = text(r.cstring())
    conn_id = r.int(4)
    r.bytes(9)  # auth-plugin-data part 1 and filler
    caps = r.int(2)
    plugin = ""
    if r.left:
        r.int(1)  # charset
        r.int(2)  # status
        caps |= r.int(2) << 16
        data_len = r.int(1)
        r.bytes(10)
        if caps & 0x8000:  # CLIENT_SECURE_CONNECTION: auth-plugin-data part 2
            r.bytes(max(13, data_len - 8))
        if caps & CLIENT_PLUGIN_AUTH:
            plugin = text(r.cstring()) or ""
    return {"version": version, "connection_id": conn_id, "caps": caps, "plugin": plugin}


def login(payload: bytes) -> dict:
    """HandshakeResponse41: capabilities, user, database, plugin, connect attributes. The
    auth response is read past and never returned."""
    r = Reader(payload)
    caps = r.int(4)
    if not caps & CLIENT_PROTOCOL_41:
        raise ValueError("pre-4.1 login packets are not supported")
    r.bytes(4 + 1 + 23)  # max packet, charset, filler (MariaDB capabilities at its end)
    out = {"caps": caps, "user": "", "database": "", "plugin": "", "attrs": {}}
    if r.left == 0:
        return out  # an SSLRequest: TLS follows
    out["user"] = text(r.cstring())
    if caps & CLIENT_PLUGIN_AUTH_LENENC:
        r.lenenc_bytes()
    elif caps & 0x8000:
        r.bytes(r.int(1))
    else:
        r.cstring()
    if caps & CLIENT_CONNECT_WITH_DB and r.left:
        out["database"] = text(r.cstring())
    if caps & CLIENT_PLUGIN_AUTH and r.left:
        out["plugin"] = text(r.cstring())
    if caps & CLIENT_CONNECT_ATTRS and r.left:
        end = r.lenenc() or 0
        stop = r.pos + end
        while r.pos < stop:
            key = text(r.lenenc_bytes())
            out["attrs"][key] = text(r.lenenc_bytes())
    return out


def ok_packet(payload: bytes) -> dict:
    r = Reader(payload, 1)
    out = {"affected_rows": r.lenenc() or 0, "last_insert_id": r.lenenc() or 0}
    out["status"] = r.int(2) if r.left >= 2 else 0
    out["warnings"] = r.int(2) if r.left >= 2 else 0
    if r.left:
        info = r.lenenc_bytes() if payload[0] == 0 else None
        out["info"] = text(info) or ""
    return out


def eof_status(payload: bytes) -> int:
    """Server status flags of an EOF packet (0xFE, warnings, status)."""
    return int.from_bytes(payload[3:5], "little") if len(payload) >= 5 else 0


def err_packet(payload: bytes) -> tuple[int, str, str]:
    """(error code, SQLSTATE or "", message)."""
    code = int.from_bytes(payload[1:3], "little")
    if payload[3:4] == b"#":
        return code, payload[4:9].decode("ascii", "replace"), text(payload[9:]) or ""
    return code, "", text(payload[3:]) or ""


def column_definition(payload: bytes) -> tuple[str, int, int]:
    """(name, type, flags) of a ColumnDefinition41."""
    r = Reader(payload)
    for _ in range(4):  # catalog, schema, table, org_table
        r.lenenc_bytes()
    name = text(r.lenenc_bytes()) or ""
    r.lenenc_bytes()  # org_name
    r.lenenc()  # length of the fixed fields (0x0c)
    r.int(2 + 4)  # charset, column length
    ctype = r.int(1)
    flags = r.int(2)
    return name, ctype, flags


def text_row(payload: bytes) -> list[str | None]:
    r = Reader(payload)
    values = []
    while r.left:
        values.append(text(r.lenenc_bytes()))
    return values


_UNSIGNED = 0x20  # column flag
_INTS = {1: 1, 2: 2, 13: 2, 3: 4, 9: 4, 8: 8}
_STRINGS = frozenset({0, 15, 16, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255})


def binary_value(r: Reader, ctype: int, unsigned: bool) -> str | None:
    """One value of the binary protocol as text (raises ValueError for unknown types)."""
    size = _INTS.get(ctype)
    if size is not None:
        return str(int.from_bytes(r.bytes(size), "little", signed=not unsigned))
    if ctype in _STRINGS:
        value = r.lenenc_bytes()
        if ctype in (16, 249, 250, 251, 252, 255) and value is not None:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return "0x" + value.hex()
        return text(value)
    if ctype == 4:
        return repr(struct.unpack("<f", r.bytes(4))[0])
    if ctype == 5:
        return repr(struct.unpack("<d", r.bytes(8))[0])
    if ctype == 6:
        return None
    if ctype in (7, 10, 12, 14):  # timestamp, date, datetime, newdate
        raw = r.bytes(r.int(1))
        if not raw:
            return "0000-00-00 00:00:00" if ctype != 10 else "0000-00-00"
        out = date(int.from_bytes(raw[:2], "little"), raw[2], raw[3]).isoformat()
        if len(raw) >= 7:
            out += f" {raw[4]:02d}:{raw[5]:02d}:{raw[6]:02d}"
        if len(raw) >= 11:
            out += f".{int.from_bytes(raw[7:11], 'little'):06d}"
        return out
    if ctype == 11:  # time
        raw = r.bytes(r.int(1))
        if not raw:
            return "00:00:00"
        hours = int.from_bytes(raw[1:5], "little") * 24 + raw[5]
        out = f"{'-' if raw[0] else ''}{hours:02d}:{raw[6]:02d}:{raw[7]:02d}"
        if len(raw) >= 12:
            out += f".{int.from_bytes(raw[8:12], 'little'):06d}"
        return out
    raise ValueError(f"binary type {ctype} not rendered")


def binary_row(payload: bytes, columns: list[tuple[str, int, int]]) -> list[str | None]:
    """A binary-protocol result row (COM_STMT_EXECUTE): header 0x00, NULL bitmap (offset
    2), then the non-NULL values."""
    r = Reader(payload, 1)
    n = len(columns)
    bitmap = r.bytes((n + 9) // 8)
    values: list[str | None] = []
    for k, (_, ctype, flags) in enumerate(columns):
        bit = k + 2
        if bitmap[bit // 8] >> (bit % 8) & 1:
            values.append(None)
        else:
            values.append(binary_value(r, ctype, bool(flags & _UNSIGNED)))
    return values


def execute_params(
    payload: bytes, n_params: int, types: list[tuple[int, bool]]
) -> tuple[int, list[str | None], list[tuple[int, bool]]]:
    """COM_STMT_EXECUTE: (statement id, parameter values as text, parameter types). Types
    come with the packet when it says so, else from the previous execute (`types`)."""
    r = Reader(payload, 1)
    stmt_id = r.int(4)
    r.int(1 + 4)  # cursor flags, iteration count
    if n_params <= 0 or not r.left:
        return stmt_id, [], types
    bitmap = r.bytes((n_params + 7) // 8)
    if r.int(1):
        types = []
        for _ in range(n_params):
            ctype, flag = r.int(1), r.int(1)
            types.append((ctype, bool(flag & 0x80)))
    values: list[str | None] = []
    for k in range(n_params):
        if bitmap[k // 8] >> (k % 8) & 1:
            values.append(None)
        elif k < len(types):
            values.append(binary_value(r, *types[k]))
    return stmt_id, values, types
