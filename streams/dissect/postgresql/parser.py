"""PostgreSQL frontend/backend protocol 3.0: framing per direction and message decoders.

Every message but the first client one is a type byte, a big-endian int32 length that
counts itself, and a payload. The first client message (and the one after an SSLRequest
or GSSENCRequest) has no type byte, and the server answers those two requests with one
bare byte. Messages larger than the cap are cut: the head is kept, the rest skipped
without buffering.
"""

from __future__ import annotations

import struct

from streams.dissect.base import DissectError
from streams.dissect.common import SegmentBuffer
from streams.dissect.postgresql.events import (
    CANCEL,
    GSS_REQUEST,
    SSL_ANSWER,
    SSL_REQUEST,
    STARTUP,
    Frame,
)

DEFAULT_MAX_FRAME = 256 * 1024  # payload bytes kept per message; the rest is skipped
MAX_LENGTH = 1 << 30  # the server's own limit on a message
MAX_STARTUP = 10_000  # the server refuses longer startup packets

CLIENT_TYPES = frozenset("QPBDESCHXFpdcf")
SERVER_TYPES = frozenset("RSKZTDCEIN123ntsAGHWdcvV")
_UNTYPED = {80877103: SSL_REQUEST, 80877104: GSS_REQUEST, 80877102: CANCEL}
TLS = "tls"  # pseudo frame: the client started a TLS handshake after SSLRequest

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_HEAD = struct.Struct("!ii")


def untyped_kind(length: int, code: int) -> str | None:
    """The message an untyped header announces, or None if it is not one."""
    if not 8 <= length <= MAX_STARTUP:
        return None
    if code >> 16 == 3:
        return STARTUP
    kind = _UNTYPED.get(code)
    if kind is None or (kind == CANCEL) != (length == 16) or (kind != CANCEL and length != 8):
        return None
    return kind


class Framer(SegmentBuffer):
    """Bytes of one direction in, whole `Frame`s out (raises `DissectError` on bad framing)."""

    def __init__(self, client: bool, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__()
        self.client = client
        self.types = CLIENT_TYPES if client else SERVER_TYPES
        self.max_frame = max_frame
        self.untyped = False  # next client message has no type byte
        self.answers = 0  # bare one-byte answers the server owes (SSL / GSS requests)
        self.dead = False
        self.first = client  # the first client message may be typed (capture began late)

    def reset(self) -> None:
        super().reset()
        self.dead = True

    def _frames(self, buf: bytearray, old: int, ts: int, out: list[Frame]) -> int:
        pos, end = 0, len(buf)
        if self.dead:  # given up, or TLS from here on
            return end
        while pos < end:
            start_ts = self.ts if pos < old else ts
            avail = end - pos
            if self.answers and not self.client:
                self.answers -= 1
                out.append(Frame(SSL_ANSWER, bytes(buf[pos : pos + 1]), self._at(pos), ts, ts, 1))
                pos += 1
                continue
            if self.untyped:
                if self.client and buf[pos] == 0x16:  # TLS ClientHello after SSLRequest
                    out.append(Frame(TLS, b"", self._at(pos), start_ts, ts, avail))
                    self.dead = True
                    pos = end
                    break
                if avail < 8:
                    break
                length, code = _HEAD.unpack_from(buf, pos)
                kind = untyped_kind(length, code)
                if kind is None and self.first and chr(buf[pos]) in self.types:
                    self.untyped = False  # the capture began after the startup
                    continue
                if kind is None:
                    raise DissectError(f"not a PostgreSQL startup packet (length {length})")
                header, total = 4, length
            else:
                if buf[pos] > 0x7F or chr(buf[pos]) not in self.types:
                    side = "client" if self.client else "server"
                    raise DissectError(f"unknown {side} message type {buf[pos]:#04x}")
                if avail < 5:
                    break
                kind = chr(buf[pos])
                (length,) = _I32.unpack_from(buf, pos + 1)
                if not 4 <= length <= MAX_LENGTH:
                    raise DissectError(f"bad length {length} for message {kind!r}")
                header, total = 5, length + 1
            self.first = False
            if total <= avail:
                body = bytes(buf[pos + header : pos + total])
                out.append(Frame(kind, body, self._at(pos), start_ts, ts, total))
                pos += total
                if self.untyped and kind in (STARTUP, CANCEL):
                    self.untyped = False
                continue
            if total - header > self.max_frame and avail >= header + self.max_frame:
                body = bytes(buf[pos + header : pos + header + self.max_frame])
                self.cut = Frame(kind, body, self._at(pos), start_ts, ts, total, True)
                self.skip = total - avail
                if self.untyped and kind in (STARTUP, CANCEL):
                    self.untyped = False
                pos = end
            break
        return pos

    def _at(self, pos: int) -> int:
        return (self.seq + pos) & 0xFFFFFFFF


# ------------------------------------------------------------------ decoders


def cstring(body: bytes, pos: int) -> tuple[str, int]:
    """The NUL-terminated UTF-8 string at `pos`, and the position after its NUL."""
    end = body.find(b"\0", pos)
    if end < 0:
        end = len(body)  # a message cut at the cap: take what is there
    return body[pos:end].decode("utf-8", "replace"), end + 1


def startup_params(body: bytes) -> tuple[str, dict[str, str]]:
    """Protocol version ("3.0") and the parameters of a StartupMessage."""
    (code,) = _I32.unpack_from(body, 0)
    params: dict[str, str] = {}
    pos = 4
    while pos < len(body) and body[pos]:
        key, pos = cstring(body, pos)
        value, pos = cstring(body, pos)
        params[key] = value
    return f"{code >> 16}.{code & 0xFFFF}", params


def error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by their one-letter codes."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos]:
        code = chr(body[pos])
        out[code], pos = cstring(body, pos + 1)
    return out


def row_description(body: bytes) -> list[tuple[str, int, int]]:
    """(name, type oid, format code) per column."""
    (n,) = _I16.unpack_from(body, 0)
    pos = 2
    cols = []
    for _ in range(n):
        name, pos = cstring(body, pos)
        oid, fmt = _I32.unpack_from(body, pos + 6)[0], _I16.unpack_from(body, pos + 16)[0]
        cols.append((name, oid, fmt))
        pos += 18
    return cols


def data_row(body: bytes) -> list[bytes | None]:
    return _values(body, 0)[0]


def _values(body: bytes, pos: int) -> tuple[list[bytes | None], int]:
    """An int16 count of values, each an int32 length (-1: NULL) and its bytes; and the
    position after them."""
    (n,) = _I16.unpack_from(body, pos)
    pos += 2
    values: list[bytes | None] = []
    for _ in range(n):
        (size,) = _I32.unpack_from(body, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[pos : pos + size])
            pos += size
    return values, pos


def parse_message(body: bytes) -> tuple[str, str, list[int]]:
    """Parse: (statement name, SQL, parameter type oids)."""
    name, pos = cstring(body, 0)
    sql, pos = cstring(body, pos)
    oids: list[int] = []
    if pos + 2 <= len(body):
        (n,) = _I16.unpack_from(body, pos)
        oids = [_I32.unpack_from(body, pos + 2 + 4 * k)[0] for k in range(n)]
    return name, sql, oids


def bind_message(body: bytes) -> tuple[str, str, list[int], list[bytes | None], list[int]]:
    """Bind: (portal, statement, parameter formats, parameter values, result formats)."""
    portal, pos = cstring(body, 0)
    stmt, pos = cstring(body, pos)
    (nf,) = _I16.unpack_from(body, pos)
    formats = [_I16.unpack_from(body, pos + 2 + 2 * k)[0] for k in range(nf)]
    values, pos = _values(body, pos + 2 + 2 * nf)
    results: list[int] = []
    if pos + 2 <= len(body):
        (nr,) = _I16.unpack_from(body, pos)
        results = [_I16.unpack_from(body, pos + 2 + 2 * k)[0] for k in range(nr)]
    return portal, stmt, formats, values, results


def int32_list(body: bytes, pos: int = 0) -> list[int]:
    (n,) = _I16.unpack_from(body, pos)
    return [_I32.unpack_from(body, pos + 2 + 4 * k)[0] for k in range(n)]


def auth_code(body: bytes) -> int:
    return _I32.unpack_from(body, 0)[0]


def sasl_mechanisms(body: bytes) -> list[str]:
    out = []
    pos = 4
    while pos < len(body) and body[pos]:
        name, pos = cstring(body, pos)
        out.append(name)
    return out


# Binary-format values Wiretide renders as text (the rest shows as \x hex, like psql).
_BINARY_INTS = {21: 2, 23: 4, 20: 8, 26: 4}
_BINARY_TEXT = frozenset({25, 1043, 19, 18, 1042, 114, 705})
_BOOL, _FLOAT4, _FLOAT8, _JSONB = 16, 700, 701, 3802


def render_value(value: bytes | None, fmt: int, oid: int) -> str | None:
    """A column or parameter value as text (what psql would show for the common types)."""
    if value is None:
        return None
    if fmt == 0 or oid in _BINARY_TEXT:
        return value.decode("utf-8", "replace")
    size = _BINARY_INTS.get(oid)
    if size is not None and len(value) == size:
        return str(int.from_bytes(value, "big", signed=oid != 26))
    if oid == _BOOL and len(value) == 1:
        return "t" if value[0] else "f"
    if oid == _FLOAT4 and len(value) == 4:
        return repr(struct.unpack("!f", value)[0])
    if oid == _FLOAT8 and len(value) == 8:
        return repr(struct.unpack("!d", value)[0])
    if oid == _JSONB and value[:1] == b"\x01":
        return value[1:].decode("utf-8", "replace")
    return "\\x" + value.hex()
