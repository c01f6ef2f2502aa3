"""The Avro contract downstream consumers rely on: single-object encoding, exact round trips,
and a clear CodecError (never a crash) for anything else."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import MAGIC, CodecError, codec
from schemas.records import ApiCall, Segment
from schemas.serde import decode_call, decode_segment_batch, encode_call, encode_segment_batch

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO written out from the Avro specification, independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def test_header_is_magic_plus_little_endian_fingerprint_of_canonical_form() -> None:
    from fastavro.schema import to_parsing_canonical_form

    c = codec("ApiCall")
    canonical = to_parsing_canonical_form(c.schema)
    expected = _crc64_avro(canonical.encode()).to_bytes(8, "little")
    msg = encode_call(ApiCall("id", "http", 1, "10.0.0.1", 1234, "10.0.0.2", 80, "f"))
    assert msg[:2] == MAGIC == b"\xc3\x01"
    assert msg[2:10] == expected


def test_a_plain_avro_reader_can_decode_the_body() -> None:
    """A consumer with only the .avsc files (no Wiretide code) reads our messages."""
    seg = Segment(5, "::1", 40000, "::1", 80, 7, 9, 0x18, b"GET / HTTP/1.1\r\n\r\n", "n1")
    msg = encode_segment_batch("flow", [seg])
    named: dict = {}
    parse_schema(json.loads((SCHEMAS / "Segment.avsc").read_text()), named_schemas=named)
    schema = parse_schema(
        json.loads((SCHEMAS / "SegmentBatch.avsc").read_text()), named_schemas=named
    )
    record = schemaless_reader(io.BytesIO(msg[10:]), schema, None)
    assert record["segments"][0]["payload"] == seg.payload
    assert record["segments"][0]["src_ip"] == "::1"


headers = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=4).map(tuple)
calls = st.builds(
    ApiCall,
    call_id=st.text(max_size=32),
    protocol=st.sampled_from(["http", "dns"]),
    ts_ns=st.integers(0, 2**62),
    src_ip=st.ip_addresses().map(str),
    src_port=st.integers(0, 65535),
    dst_ip=st.ip_addresses().map(str),
    dst_port=st.integers(0, 65535),
    flow_id=st.text(max_size=50),
    method=st.text(max_size=8),
    request_headers=headers,
    response_headers=headers,
    request_body=st.binary(max_size=200),
    response_body=st.binary(max_size=200),
    status=st.integers(0, 999),
    response_ts_ns=st.integers(0, 2**62),
    flags=st.lists(st.text(max_size=8), max_size=3).map(tuple),
)


@given(calls)
def test_calls_round_trip_exactly(call: ApiCall) -> None:
    assert decode_call(encode_call(call)) == call


@given(
    st.lists(
        st.builds(
            Segment,
            ts_ns=st.integers(0, 2**62),
            src_ip=st.ip_addresses().map(str),
            src_port=st.integers(0, 65535),
            dst_ip=st.ip_addresses().map(str),
            dst_port=st.integers(0, 65535),
            seq=st.integers(0, 2**32 - 1),
            ack=st.integers(0, 2**32 - 1),
            flags=st.integers(0, 255),
            payload=st.binary(max_size=300),
        ),
        max_size=5,
    )
)
def test_segment_batches_round_trip_exactly(segments: list[Segment]) -> None:
    assert decode_segment_batch(encode_segment_batch("f", segments)) == segments


@given(st.binary(max_size=300))
def test_garbage_raises_codec_error_only(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_call(data)


@given(st.binary(min_size=1, max_size=64))
def test_corrupt_body_after_a_valid_header_raises_codec_error_only(tail: bytes) -> None:
    msg = encode_call(ApiCall("id", "http", 1, "a", 1, "b", 2, "f"))
    try:
        decode_call(msg[:10] + tail)
    except CodecError:
        pass


def test_wrong_schema_is_named_in_the_error() -> None:
    msg = encode_segment_batch("f", [])
    with pytest.raises(CodecError, match="fingerprint"):
        decode_call(msg)


def test_trailing_bytes_are_rejected() -> None:
    msg = encode_call(ApiCall("id", "http", 1, "a", 1, "b", 2, "f"))
    with pytest.raises(CodecError, match="trailing"):
        decode_call(msg + b"\x00")
