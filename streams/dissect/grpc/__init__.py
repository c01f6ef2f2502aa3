"""gRPC bodies (their calls are HTTP/2 streams, read by `streams.dissect.http2`):
length-prefixed messages, their compression, and a schema-less view of protobuf as JSON
(what `protoc --decode_raw` shows, as JSON a reader can query).

A body is a sequence of messages, each `flag(1) length(4, big-endian) payload`; flag 1
means the payload is compressed with the stream's `grpc-encoding`.

Protobuf without its schema is ambiguous: a length-delimited field can be a string, bytes,
a nested message or a packed array. We show it as a nested message when the bytes parse
as one, as text when they are UTF-8, else as base64. Printable text is tried first,
though: short words often parse as a tiny message ("hi" is field 13 = 105), while a real
nested message almost always holds bytes below 0x20 (its tags and lengths).
"""

from __future__ import annotations

import base64
import zlib
from typing import Any
from urllib.parse import unquote

from streams.dissect.common import compact_json

PROTOCOL = "grpc"
MAX_DEPTH = 32  # nesting tried before a field is shown as bytes
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class NotProtobuf(ValueError):
    pass


def content_is_grpc(content_type: str) -> bool:
    return content_type[:16].lower() == "application/grpc"


def grpc_message_text(value: str) -> str:
    """grpc-message is percent-encoded UTF-8."""
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        return value


def _varint(data: bytes, i: int, end: int) -> tuple[int, int]:
    shift = result = 0
    while i < end:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if shift >= 64 or result >= 1 << 64:
                raise NotProtobuf("varint too long")
            return result, i
        shift += 7
        if shift > 63:
            raise NotProtobuf("varint too long")
    raise NotProtobuf("cut varint")


def _length_value(data: bytes, depth: int) -> Any:
    if not data:
        return ""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return text
    if depth < MAX_DEPTH:
        try:
            return decode_message(data, depth + 1)
        except NotProtobuf:
            pass
    if text is not None and "\x00" not in text:
        return text
    return base64.b64encode(data).decode("ascii")


def decode_message(data: bytes, depth: int = 0) -> dict[str, Any]:
    """Protobuf wire format -> {"field number": value or [values]}; raises NotProtobuf."""
    fields: dict[str, list[Any]] = {}
    i, end = 0, len(data)
    while i < end:
        key, i = _varint(data, i, end)
        number, wire = key >> 3, key & 7
        if number == 0 or number >= 1 << 29:
            raise NotProtobuf("bad field number")
        if wire == VARINT:
            value, i = _varint(data, i, end)
        elif wire == FIXED64:
            if i + 8 > end:
                raise NotProtobuf("cut fixed64")
            value = int.from_bytes(data[i : i + 8], "little")
            i += 8
        elif wire == FIXED32:
            if i + 4 > end:
                raise NotProtobuf("cut fixed32")
            value = int.from_bytes(data[i : i + 4], "little")
            i += 4
        elif wire == LENGTH:
            size, i = _varint(data, i, end)
            if i + size > end:
                raise NotProtobuf("cut length-delimited field")
            value = _length_value(data[i : i + size], depth)
            i += size
        else:
            raise NotProtobuf(f"wire type {wire}")  # groups are deprecated; 6, 7 do not exist
        fields.setdefault(str(number), []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in fields.items()}


def message_view(payload: bytes) -> Any:
    """One gRPC message as a JSON value: its fields, or text, or base64."""
    try:
        return decode_message(payload)
    except NotProtobuf:
        pass
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii")


def _inflate(payload: bytes, encoding: str, cap: int) -> bytes | None:
    try:
        if encoding == "gzip":
            d = zlib.decompressobj(31)
        elif encoding == "deflate":
            d = zlib.decompressobj(zlib.MAX_WBITS if payload[:1] == b"\x78" else -zlib.MAX_WBITS)
        else:
            return None
        return d.decompress(payload, cap)
    except zlib.error:
        return None


def split_messages(body: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """Length-prefixed messages in a body -> ([(flag, payload)], cut): `cut` when the body
    ends inside a message (the capture cap, or a stream that never finished)."""
    out = []
    i, end = 0, len(body)
    while i + 5 <= end:
        flag = body[i]
        size = int.from_bytes(body[i + 1 : i + 5], "big")
        if i + 5 + size > end:
            return out, True
        out.append((flag, body[i + 5 : i + 5 + size]))
        i += 5 + size
    return out, i != end


def body_json(body: bytes, encoding: str, cap: int) -> tuple[bytes, list[str]]:
    """A gRPC body as UTF-8 JSON (one message: its value; several: a list) and flags."""
    messages, cut = split_messages(body)
    flags = ["grpc_message_cut"] if cut else []
    values = []
    encoding = encoding.strip().lower()
    for flag, payload in messages:
        if flag & 1:
            inflated = _inflate(payload, encoding, cap)
            if inflated is None:
                flags.append("decode_error")
                values.append(base64.b64encode(payload).decode("ascii"))
                continue
            payload = inflated
        values.append(message_view(payload))
    if not values:
        return b"", flags
    doc = values[0] if len(values) == 1 else values
    return compact_json(doc), flags
