"""Decode AMQP 0-9-1 method arguments, field tables and content properties into plain
Python values (str, int, float, bool, None, dict, list) that serialise as JSON.

Field-table value types follow RabbitMQ's reading of the spec (its errata), which is what
every current client writes. Any out-of-bounds read raises `DissectError`.
"""

from __future__ import annotations

import math
from decimal import Decimal
from struct import Struct
from typing import Any

from streams.dissect.amqp.spec import PROPERTIES, SECRET_ARGS
from streams.dissect.base import DissectError

_U16, _U32, _U64 = Struct(">H"), Struct(">I"), Struct(">Q")
_I16, _I32, _I64 = Struct(">h"), Struct(">i"), Struct(">q")
_F32, _F64 = Struct(">f"), Struct(">d")
MAX_DEPTH = 32  # nested tables/arrays deeper than this are malformed (stack safety)


def text(raw: bytes) -> str:
    """Strings are UTF-8 by convention; other bytes stay visible as escapes."""
    return raw.decode("utf-8", "backslashreplace")


class Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def take(self, n: int) -> int:
        """Start offset of the next `n` bytes (which are consumed)."""
        p = self.pos
        if p + n > self.end:
            raise DissectError("argument runs past the end of its frame")
        self.pos = p + n
        return p

    def octet(self) -> int:
        return self.buf[self.take(1)]

    def short(self) -> int:
        return _U16.unpack_from(self.buf, self.take(2))[0]

    def long(self) -> int:
        return _U32.unpack_from(self.buf, self.take(4))[0]

    def longlong(self) -> int:
        return _U64.unpack_from(self.buf, self.take(8))[0]

    def raw_shortstr(self) -> bytes:
        n = self.octet()
        p = self.take(n)
        return self.buf[p : p + n]

    def raw_longstr(self) -> bytes:
        n = self.long()
        p = self.take(n)
        return self.buf[p : p + n]

    def shortstr(self) -> str:
        return text(self.raw_shortstr())

    def longstr(self) -> str:
        return text(self.raw_longstr())

    def table(self, depth: int = 0) -> dict[str, Any]:
        n = self.long()
        end = self.take(n) + n
        inner = Reader(self.buf, self.pos - n, end)
        out: dict[str, Any] = {}
        while inner.pos < end:
            key = inner.shortstr()
            out[key] = inner.field_value(depth + 1)
        return out

    def array(self, depth: int) -> list[Any]:
        n = self.long()
        end = self.take(n) + n
        inner = Reader(self.buf, self.pos - n, end)
        out = []
        while inner.pos < end:
            out.append(inner.field_value(depth + 1))
        return out

    def field_value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise DissectError("field table nested too deeply")
        kind = self.octet()
        if kind == 0x53 or kind == 0x78:  # 'S' long string, 'x' byte array
            return self.longstr()
        if kind == 0x74:  # 't' boolean
            return self.octet() != 0
        if kind == 0x62:  # 'b' signed 8
            v = self.octet()
            return v - 256 if v > 127 else v
        if kind == 0x42:  # 'B' unsigned 8
            return self.octet()
        if kind == 0x73:  # 's' signed 16
            return _I16.unpack_from(self.buf, self.take(2))[0]
        if kind == 0x75:  # 'u' unsigned 16
            return self.short()
        if kind == 0x49:  # 'I' signed 32
            return _I32.unpack_from(self.buf, self.take(4))[0]
        if kind == 0x69:  # 'i' unsigned 32
            return self.long()
        if kind == 0x6C or kind == 0x4C:  # 'l' signed 64 ('L' in the 0-9-1 spec text)
            return _I64.unpack_from(self.buf, self.take(8))[0]
        if kind == 0x66:  # 'f' float
            return _number(_F32.unpack_from(self.buf, self.take(4))[0])
        if kind == 0x64:  # 'd' double
            return _number(_F64.unpack_from(self.buf, self.take(8))[0])
        if kind == 0x44:  # 'D' decimal: scale, then a signed 32-bit value
            scale = self.octet()
            value = _I32.unpack_from(self.buf, self.take(4))[0]
            return str(Decimal(value).scaleb(-scale))
        if kind == 0x54:  # 'T' timestamp (seconds)
            return self.longlong()
        if kind == 0x46:  # 'F' nested table
            return self.table(depth)
        if kind == 0x41:  # 'A' array
            return self.array(depth)
        if kind == 0x56:  # 'V' void
            return None
        raise DissectError(f"unknown field-table value type 0x{kind:02x}")


def _number(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)  # JSON has no NaN or infinity


def decode_args(
    buf: bytes, start: int, end: int, args: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    """A method's arguments in `buf[start:end]` (after the class and method ids), by spec
    name. Reserved arguments are dropped; secrets (SASL responses) are shown by size only."""
    r = Reader(buf, start, end)
    out: dict[str, Any] = {}
    bit = 8
    bits = 0
    for kind, name in args:
        if kind == "bit":
            if bit == 8:
                bits, bit = r.octet(), 0
            value: Any = bool(bits >> bit & 1)
            bit += 1
        else:
            bit = 8
            if kind == "shortstr":
                value = r.shortstr()
            elif kind == "longstr":
                raw = r.raw_longstr()
                value = len(raw) if name in SECRET_ARGS else text(raw)
                if name in SECRET_ARGS:
                    name += "-size"
            elif kind == "short":
                value = r.short()
            elif kind == "long":
                value = r.long()
            elif kind == "longlong":
                value = r.longlong()
            elif kind == "octet":
                value = r.octet()
            else:  # table
                value = r.table()
        if not name.startswith("reserved"):
            out[name] = value
    return out


def decode_properties(buf: bytes, start: int, end: int) -> dict[str, Any]:
    """Basic content properties in `buf[start:end]`: property flags, then present values."""
    r = Reader(buf, start, end)
    flags = more = r.short()
    while more & 1:  # continuation words flag properties beyond the fourteen defined ones
        more = r.short()
    out: dict[str, Any] = {}
    for k, (kind, name) in enumerate(PROPERTIES):
        if not flags >> (15 - k) & 1:
            continue
        if kind == "shortstr":
            out[name] = r.shortstr()
        elif kind == "octet":
            out[name] = r.octet()
        elif kind == "timestamp":
            out[name] = r.longlong()
        else:
            out[name] = r.table()
    return out
