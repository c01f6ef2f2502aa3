"""Version 2 of the segments wire (schemas/segment_wire.py): segments round-trip exactly,
any Avro reader decodes the message with SegmentColumns.avsc, a corrupt message raises
CodecError only, and `serde.decode_segment_batch` reads both versions."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import serde
from schemas.codec import CodecError
from schemas.records import Segment
from schemas.segment_wire import (
    HEADER,
    columns_from_segments,
    decode_columns,
    decode_segments,
    encode_columns,
    encode_segments,
)

SCHEMA = parse_schema(json.loads((Path(serde.__file__).parent / "SegmentColumns.avsc").read_text()))
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=20)
segments = st.builds(
    Segment,
    ts_ns=INT64, src_ip=text, src_port=INT32, dst_ip=text, dst_port=INT32, seq=INT64,
    ack=INT64, flags=INT32, payload=st.binary(max_size=300), node=text, source=text,
    transport=text,
)  # fmt: skip
# A flow's segments: two endpoints, either way round.
flow_segments = st.lists(
    st.builds(
        lambda fwd, ts, payload, flags: Segment(
            ts,
            *(("10.0.0.1", 40000, "::1", 80) if fwd else ("::1", 80, "10.0.0.1", 40000)),
            ts % 2**32,
            ts % 7,
            flags,
            payload,
        ),
        st.booleans(),
        st.integers(0, 2**62),
        st.binary(max_size=100),
        st.integers(0, 511),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(segments, max_size=40) | flow_segments, text)
def test_segments_round_trip_exactly(batch: list[Segment], flow: str) -> None:
    msg = encode_segments(flow, batch)
    assert msg[:10] == HEADER
    assert decode_segments(msg) == batch
    assert serde.decode_segment_batch(msg) == batch
    assert decode_columns(msg).flow_id == flow


@settings(max_examples=100, deadline=None)
@given(flow_segments, text)
def test_a_plain_avro_reader_decodes_the_message(batch: list[Segment], flow: str) -> None:
    """A consumer with only the .avsc (no Wiretide code) reads it, and fastavro writes
    the very same bytes from what it read."""
    msg = encode_segments(flow, batch)
    record = schemaless_reader(io.BytesIO(msg[10:]), SCHEMA, None)
    cols = columns_from_segments(flow, batch)
    assert record["flow_id"] == flow
    assert record["payloads"] == b"".join(s.payload for s in batch)
    assert [tuple(h.values()) for h in record["headers"]] == list(cols.headers)
    out = io.BytesIO()
    schemaless_writer(out, SCHEMA, record)
    assert HEADER + out.getvalue() == msg


def test_both_directions_share_two_headers() -> None:
    a = Segment(1, "10.0.0.1", 40000, "10.0.0.2", 80, 1, 2, 16, b"GET")
    b = Segment(2, "10.0.0.2", 80, "10.0.0.1", 40000, 2, 4, 16, b"200")
    cols = columns_from_segments("f", [a, b, a, b, a])
    assert len(cols.headers) == 2 and cols.count == 5


@pytest.mark.parametrize(
    "seg",
    [
        Segment(1, "a", 2**31, "b", 80, 1, 2, 16, b""),  # a port beyond an Avro int
        Segment(1, "a", 1, "b", 80, 2**63, 2, 16, b""),  # seq beyond int64
        Segment(1, "a", 1, "b", 80, 1, 2, 2**31, b""),
    ],
)
def test_numbers_that_do_not_fit_raise_overflow(seg: Segment) -> None:
    with pytest.raises(OverflowError):
        encode_segments("f", [seg])


def test_a_payload_that_is_not_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode_segments("f", [Segment(1, "a", 1, "b", 80, 1, 2, 16, bytearray(b"x"))])  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(flow_segments.filter(bool), st.data())
def test_corrupt_messages_raise_codec_error_only(batch: list[Segment], data) -> None:
    msg = encode_segments("flow", batch)
    cut = data.draw(st.integers(10, len(msg) - 1))
    flip = data.draw(st.integers(10, len(msg) - 1))
    byte = data.draw(st.integers(0, 255))
    for bad in (msg[:cut], msg[:flip] + bytes([byte]) + msg[flip + 1 :], msg + b"\x00"):
        try:
            out = serde.decode_segment_batch(bad)
        except CodecError as e:
            assert "\n" not in str(e)
            continue
        assert all(type(s) is Segment for s in out)


def test_columns_that_disagree_are_corrupt() -> None:
    seg = Segment(1, "a", 1, "b", 80, 1, 2, 16, b"xyz")
    cols = columns_from_segments("f", [seg, seg])
    for change in (
        {"ts_ns": cols.ts_ns[:8]},  # one timestamp for two segments
        {"payload_end": (3).to_bytes(4, "little") + (2).to_bytes(4, "little")},
        {"payloads": b"xyzxy"},
        {"header_index": (0).to_bytes(2, "little") + (1).to_bytes(2, "little")},
    ):
        with pytest.raises(CodecError, match="corrupt SegmentColumns"):
            decode_segments(encode_columns(dataclasses.replace(cols, **change)))


def test_version_1_messages_still_decode() -> None:
    """An older agent's SegmentBatch messages (one record per segment), e.g. still in the
    topic after an upgrade."""
    segs = [Segment(1, "10.0.0.1", 1, "10.0.0.2", 80, 1, 2, 16, b"x" * k) for k in range(3)]
    old = serde._generic_encode_segment_batch("f", segs)
    assert old[:10] != HEADER
    assert serde.decode_segment_batch(old) == segs
    assert serde.decode_segment_batch(memoryview(encode_segments("f", segs))) == segs
