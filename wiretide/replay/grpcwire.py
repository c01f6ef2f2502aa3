"""A stored gRPC body back to the wire. Sans-IO.

The dissector stores gRPC messages as schema-less JSON (`streams.dissect.grpc`): a
message is `{"field number": value}`, several messages a list. Re-encoding reverses that
view: an integer is a varint, an object a nested message, a list a repeated field, a
string UTF-8 text, unless it is base64 of bytes that are not text (how the dissector
shows such bytes). What the view lost cannot come back: fixed32/fixed64 fields go out as
varints and negative numbers were stored unsigned; a server with the schema reads both
as the same number only for varint-typed fields.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

VARINT, LENGTH = 0, 2


class NotReplayable(ValueError):
    pass


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # protobuf's two's complement for a negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string_bytes(text: str) -> bytes:
    """The bytes a stored string stands for: base64 of non-text bytes, else its UTF-8."""
    if text and len(text) % 4 == 0:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None and _not_text(raw):
            return raw
    return text.encode()


def _not_text(raw: bytes) -> bool:
    try:
        return "\x00" in raw.decode()
    except UnicodeDecodeError:
        return True


def _field(number: int, value: Any) -> bytes:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return _varint(number << 3 | VARINT) + _varint(value)
    if isinstance(value, float):
        raise NotReplayable(f"field {number}: a float has no place in a schema-less message")
    if isinstance(value, dict):
        data = encode_message(value)
    elif isinstance(value, str):
        data = _string_bytes(value)
    elif value is None:
        data = b""
    else:
        raise NotReplayable(f"field {number}: cannot encode {type(value).__name__}")
    return _varint(number << 3 | LENGTH) + _varint(len(data)) + data


def encode_message(fields: dict[str, Any]) -> bytes:
    out = bytearray()
    for key, value in fields.items():
        if not key.isdigit() or not 0 < int(key) < 1 << 29:
            raise NotReplayable(f"{key!r} is not a protobuf field number")
        for item in value if isinstance(value, list) else [value]:
            out += _field(int(key), item)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """One uncompressed length-prefixed gRPC message."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def message_bytes(value: Any) -> bytes:
    if isinstance(value, dict):
        return encode_message(value)
    if isinstance(value, str):
        return _string_bytes(value)
    raise NotReplayable(f"a gRPC message cannot be {type(value).__name__}")


def request_body(stored: bytes) -> bytes:
    """The stored JSON view of a request's messages -> their length-prefixed wire form."""
    if not stored:
        return b""
    try:
        doc = json.loads(stored)
    except ValueError:
        raise NotReplayable("the stored gRPC body is not the JSON view") from None
    messages = doc if isinstance(doc, list) else [doc]
    return b"".join(frame(message_bytes(m)) for m in messages)
