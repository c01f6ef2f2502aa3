"""Avro single-object encoding (`C3 01` + CRC-64-AVRO fingerprint + body) via fastavro."""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

_HERE = Path(__file__).parent
MAGIC = b"\xc3\x01"


class CodecError(Exception):
    """A message is not a single-object-encoded record of the expected schema."""


@cache
def _named_schemas() -> dict[str, Any]:
    named: dict[str, Any] = {}
    # Order matters: a schema may refer to names defined by an earlier one.
    for name in ("Segment", "SegmentBatch", "ApiCall", "CallBatch", "Endpoint"):
        parse_schema(json.loads((_HERE / f"{name}.avsc").read_text()), named_schemas=named)
    return named


class Codec:
    """Encoder/decoder for one record schema from this folder."""

    def __init__(self, name: str) -> None:
        named = _named_schemas()
        raw = json.loads((_HERE / f"{name}.avsc").read_text())
        self.schema = parse_schema(raw, named_schemas=dict(named))
        canonical = to_parsing_canonical_form(self.schema)
        # fastavro gives the CRC-64-AVRO bytes little-endian, as the wire format wants.
        self.fingerprint = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        self.header = MAGIC + self.fingerprint
        self.name = name

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < 10 or data[:2] != MAGIC:
            raise CodecError(f"not an Avro single-object message ({len(data)} bytes)")
        if data[2:10] != self.fingerprint:
            raise CodecError(f"schema fingerprint {data[2:10].hex()} is not {self.name}'s")
        buf = io.BytesIO(data)
        buf.seek(10)
        try:
            record = schemaless_reader(buf, self.schema, None)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise CodecError(f"corrupt {self.name} record: {type(exc).__name__}: {exc}") from None
        if buf.tell() != len(data):
            raise CodecError(f"{len(data) - buf.tell()} trailing bytes after {self.name} record")
        return record  # type: ignore[return-value]


@cache
def codec(name: str) -> Codec:
    return Codec(name)


# Avro primitives, for messages written outside fastavro and the compiled encoders.
def varint(u: int) -> bytes:
    """Base-128 varint of a non-negative (already zigzagged) int."""
    out = bytearray()
    while u > 127:
        out.append((u & 127) | 128)
        u >>= 7
    out.append(u)
    return bytes(out)


def avro_long(v: int) -> bytes:
    """An Avro long: a zigzag varint."""
    return varint((v << 1) ^ (v >> 63))


def avro_bytes(b: bytes) -> bytes:
    """Avro bytes (or a string's UTF-8): its length, then itself."""
    return avro_long(len(b)) + b
