"""A small BSON decoder (sans-IO) that renders documents as relaxed Extended JSON values
(the JSON-able Python objects `json.dumps` writes), per the BSON 1.1 and Extended JSON v2
specifications. Malformed input raises `BsonError`."""

from __future__ import annotations

import base64
import math
import struct
from decimal import Decimal
from time import gmtime
from typing import Any

_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_MAX_DEPTH = 100


class BsonError(ValueError):
    """Bytes that are not a well-formed BSON document."""


def document_size(data: bytes, pos: int = 0) -> int:
    if pos + 5 > len(data):
        raise BsonError("document cut short")
    size = _I32.unpack_from(data, pos)[0]
    if size < 5 or pos + size > len(data) or data[pos + size - 1] != 0:
        raise BsonError(f"bad document size {size}")
    return size


def decode(data: bytes, pos: int = 0) -> dict[str, Any]:
    """The document at `pos` as a dict of relaxed Extended JSON values."""
    return _document(data, pos, 0)[0]  # type: ignore[return-value]


def first_key(data: bytes, pos: int = 0) -> str:
    """The name of a document's first element (a command's name), or "" if it has none.
    Works on a document cut short, as long as the name itself is there."""
    if pos + 5 > len(data) or data[pos + 4] == 0:
        return ""
    end = data.find(b"\0", pos + 5)
    return data[pos + 5 : end].decode("utf-8", "replace") if end > 0 else ""


def _cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.find(b"\0", pos)
    if end < 0:
        raise BsonError("unterminated name")
    return data[pos:end].decode("utf-8", "replace"), end + 1


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size = _I32.unpack_from(data, pos)[0]
    end = pos + 4 + size
    if size < 1 or end > len(data) or data[end - 1] != 0:
        raise BsonError("bad string length")
    return data[pos + 4 : end - 1].decode("utf-8", "replace"), end


def _document(data: bytes, pos: int, depth: int, array: bool = False) -> tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise BsonError("documents nested too deep")
    size = document_size(data, pos)
    end = pos + size - 1
    pos += 4
    out: dict[str, Any] = {}
    items: list[Any] = []
    readers = _VALUE_READERS
    find = data.find
    try:  # per element: its name (`_cstring`, inline) and its value
        while pos < end:
            kind = data[pos]
            stop = find(b"\0", pos + 1)
            if stop < 0:
                raise BsonError("unterminated name")
            read = readers.get(kind)
            if read is None:
                raise BsonError(f"unknown element type {kind:#04x}")
            if array:
                value, pos = read(data, stop + 1, depth)
                items.append(value)
            else:
                name = data[pos + 1 : stop].decode("utf-8", "replace")
                out[name], pos = read(data, stop + 1, depth)
    except (struct.error, IndexError) as e:
        raise BsonError(f"element cut short: {e}") from None
    if pos != end:
        raise BsonError("element runs past its document")
    return (items if array else out), end + 1


def _double(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    value = _F64.unpack_from(data, pos)[0]
    if math.isfinite(value):
        return value, pos + 8
    text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return {"$numberDouble": text}, pos + 8


def _binary(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    size = _I32.unpack_from(data, pos)[0]
    sub = data[pos + 4]
    start = pos + 5
    if size < 0 or start + size > len(data):
        raise BsonError("bad binary length")
    raw = data[start : start + size]
    return {"$binary": {"base64": base64.b64encode(raw).decode(), "subType": f"{sub:02x}"}}, (
        start + size
    )


def _datetime(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    ms = _I64.unpack_from(data, pos)[0]
    if 0 <= ms <= 253402300799999:  # relaxed form for years 1970..9999
        t = gmtime(ms // 1000)
        text = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        ) + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")
        return {"$date": text}, pos + 8
    return {"$date": {"$numberLong": str(ms)}}, pos + 8


def _regex(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    pattern, pos = _cstring(data, pos)
    options, pos = _cstring(data, pos)
    return {"$regularExpression": {"pattern": pattern, "options": options}}, pos


def _db_pointer(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    ns, pos = _string(data, pos)
    oid = data[pos : pos + 12]
    if len(oid) != 12:
        raise BsonError("ObjectId cut short")
    return {"$dbPointer": {"$ref": ns, "$id": {"$oid": oid.hex()}}}, pos + 12


def _code_w_scope(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    size = _I32.unpack_from(data, pos)[0]
    code, at = _string(data, pos + 4)
    scope, at = _document(data, at, depth + 1)
    if at != pos + size:
        raise BsonError("bad code-with-scope length")
    return {"$code": code, "$scope": scope}, at


def _timestamp(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    value = _U64.unpack_from(data, pos)[0]
    return {"$timestamp": {"t": value >> 32, "i": value & 0xFFFFFFFF}}, pos + 8


def _oid(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    oid = data[pos : pos + 12]
    if len(oid) != 12:
        raise BsonError("ObjectId cut short")
    return {"$oid": oid.hex()}, pos + 12


def _bool(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if data[pos] > 1:
        raise BsonError("bad boolean")
    return data[pos] == 1, pos + 1


def _str(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _string(data, pos)


def _tagged(tag: str) -> Any:
    def read(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
        text, pos = _string(data, pos)
        return {tag: text}, pos

    return read


def decimal128(raw: bytes) -> str:
    """IEEE 754-2008 decimal128 (binary integer decimal) as its canonical string."""
    value = int.from_bytes(raw, "little")
    sign = value >> 127
    if (value >> 122) & 0x1F == 0x1F:
        return "NaN"
    if (value >> 122) & 0x1F == 0x1E:
        return "-Infinity" if sign else "Infinity"
    if (value >> 125) & 0x3 == 0x3:  # the implicit 100 prefix makes it > 10^34: zero
        exponent = (value >> 111) & 0x3FFF
        coefficient = 0
    else:
        exponent = (value >> 113) & 0x3FFF
        coefficient = value & ((1 << 113) - 1)
        if coefficient >= 10**34:
            coefficient = 0
    digits = tuple(int(c) for c in str(coefficient))
    return str(Decimal((sign, digits, exponent - 6176)))


def _decimal(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    raw = data[pos : pos + 16]
    if len(raw) != 16:
        raise BsonError("decimal128 cut short")
    return {"$numberDecimal": decimal128(raw)}, pos + 16


_VALUE_READERS = {
    0x01: _double,
    0x02: _str,
    0x03: lambda d, p, depth: _document(d, p, depth + 1),
    0x04: lambda d, p, depth: _document(d, p, depth + 1, array=True),
    0x05: _binary,
    0x06: lambda d, p, depth: ({"$undefined": True}, p),
    0x07: _oid,
    0x08: _bool,
    0x09: _datetime,
    0x0A: lambda d, p, depth: (None, p),
    0x0B: _regex,
    0x0C: _db_pointer,
    0x0D: _tagged("$code"),
    0x0E: _tagged("$symbol"),
    0x0F: _code_w_scope,
    0x10: lambda d, p, depth: (_I32.unpack_from(d, p)[0], p + 4),
    0x11: _timestamp,
    0x12: lambda d, p, depth: (_I64.unpack_from(d, p)[0], p + 8),
    0x13: _decimal,
    0xFF: lambda d, p, depth: ({"$minKey": 1}, p),
    0x7F: lambda d, p, depth: ({"$maxKey": 1}, p),
}
