"""The compiled batch codecs in schemas.serde against the generic fastavro path: the same
bytes out, the same records in, the same errors, whatever the input. The public encoders
fit numbers into range first (records.fit_call), so both paths see fitted records."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import serde
from schemas.codec import CodecError, avro_long, codec
from schemas.records import SEGMENT_RANGES, ApiCall, Segment, fit_call, fit_numbers, record_maker

INT64 = st.integers(-(2**63), 2**63 - 1)
SMALL = st.integers(-300, 300) | st.integers(0, 70_000)
ints = INT64 | SMALL
text = st.text(max_size=80)
headers = st.lists(st.tuples(text, text), max_size=70).map(tuple)  # > 63: 2-byte counts
calls = st.builds(
    ApiCall,
    call_id=text, protocol=text, ts_ns=ints, src_ip=text, src_port=ints, dst_ip=text,
    dst_port=ints, flow_id=text, node=text, source=text, tls=st.booleans(), method=text,
    path=text, query=text, request_version=text, request_headers=headers,
    request_body=st.binary(max_size=300), request_body_size=ints, request_end_ns=ints,
    status=ints, reason=text, response_version=text, response_headers=headers,
    response_body=st.binary(max_size=300), response_body_size=ints, response_ts_ns=ints,
    response_end_ns=ints, flags=st.lists(text, max_size=3).map(tuple),
    src_pod=text, dst_service=text, verdicts=headers,
)  # fmt: skip
segments = st.builds(
    Segment,
    ts_ns=ints, src_ip=text, src_port=ints, dst_ip=text, dst_port=ints, seq=ints, ack=ints,
    flags=ints, payload=st.binary(max_size=300), node=text, source=text, transport=text,
)  # fmt: skip


def test_the_compiled_codecs_are_in_use() -> None:
    for fn in (serde._ENC_SEGMENTS, serde._DEC_SEGMENTS, serde._ENC_CALLS, serde._DEC_CALLS):
        assert fn is not None


@settings(max_examples=150, deadline=None)
@given(st.lists(calls, max_size=5), text)
def test_call_batches_match_fastavro(batch: list[ApiCall], flow: str) -> None:
    msg = serde.encode_call_batch(flow, batch)
    batch = [fit_call(call) for call in batch]
    assert msg == serde._ENC_CALLS(flow, batch)  # no fallback was needed
    assert msg == serde._generic_encode_call_batch(flow, batch)
    assert serde._DEC_CALLS(msg) == serde._generic_decode_call_batch(msg) == batch
    assert serde.decode_call_batch(msg) == batch


@settings(max_examples=100, deadline=None)
@given(calls)
def test_single_calls_match_fastavro(call: ApiCall) -> None:
    msg = serde.encode_call(call)
    call = fit_call(call)
    assert msg == serde._ENC_CALL(call) == serde._generic_encode_call(call)
    assert serde._DEC_CALL(msg) == serde._generic_decode_call(msg) == call


@settings(max_examples=150, deadline=None)
@given(st.lists(segments, max_size=70), text)
def test_segment_batches_match_fastavro(batch: list[Segment], flow: str) -> None:
    msg = serde.encode_segment_batch(flow, batch)
    assert msg == serde._ENC_SEGMENTS(flow, batch)
    assert msg == serde._generic_encode_segment_batch(flow, batch)
    assert serde._DEC_SEGMENTS(msg) == serde._generic_decode_segment_batch(msg) == batch


def _seg(**kw: object) -> Segment:
    base = dict(ts_ns=1, src_ip="10.0.0.1", src_port=1, dst_ip="10.0.0.2", dst_port=80, seq=1,
                ack=2, flags=16, payload=b"x")  # fmt: skip
    base.update(kw)
    return Segment(**base)  # type: ignore[arg-type]


def _raises(fn, *args):  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the exception is the result here
        return type(e), str(e)
    return None


@pytest.mark.parametrize(
    "seg",
    [
        _seg(src_port=True),  # bool where an int goes
        _seg(payload=bytearray(b"abc")),
        _seg(payload=memoryview(b"abc")),
        _seg(src_ip="\ud800"),  # a lone surrogate: both raise
        _seg(src_ip=None),
        _seg(flags=1.0),
    ],
)
def test_odd_values_go_the_generic_way(seg: Segment) -> None:
    generic = _raises(serde._generic_encode_segment_batch, "f", [seg])
    ours = _raises(serde.encode_segment_batch, "f", [seg])
    assert ours == generic
    if generic is None:
        assert serde.encode_segment_batch("f", [seg]) == serde._generic_encode_segment_batch(
            "f", [seg]
        )


@pytest.mark.parametrize("seg", [_seg(ts_ns=2**63), _seg(seq=-(2**63) - 1)])
def test_out_of_range_segment_numbers_are_clamped_not_fatal(seg: Segment) -> None:
    fitted, clamped = fit_numbers(seg, SEGMENT_RANGES)
    assert clamped and serde.decode_segment_batch(serde.encode_segment_batch("f", [seg])) == [
        fitted
    ]


def test_odd_call_values_go_the_generic_way() -> None:
    call = ApiCall("id", "http", 1, "a", 1, "b", 2, "f", request_headers=[("a", "b")])  # type: ignore[arg-type]
    assert serde.encode_call_batch("f", [call]) == serde._generic_encode_call_batch("f", [call])
    bad = ApiCall("id", "http", 1, "a", 1, "b", 2, "f", response_headers=(("a",),))  # type: ignore[arg-type]
    assert _raises(serde.encode_call_batch, "f", [bad]) == _raises(
        serde._generic_encode_call_batch, "f", [bad]
    )


def test_an_iterator_of_calls_survives_a_fallback() -> None:
    calls = [
        ApiCall("id", "http", 1, "a", 1, "b", 2, "f"),
        ApiCall("j", "http", 1, "a", 1, "b", 2, "f", response_headers=(("a",),)),  # type: ignore[arg-type]
    ]
    assert _raises(serde.encode_call_batch, "f", iter(calls)) == _raises(
        serde._generic_encode_call_batch, "f", calls
    )
    ok = calls[:1] * 3
    assert serde.encode_call_batch("f", iter(ok)) == serde._generic_encode_call_batch("f", ok)


def _segment_bytes(seg: Segment) -> bytes:
    """One Segment record's encoding, cut from a batch of one."""
    msg = serde._generic_encode_segment_batch("", [seg])
    return msg[10 + 1 + 1 : -1]  # header, empty flow id, count 1 ... end of array


def test_blocked_arrays_and_overlong_varints_decode_like_fastavro() -> None:
    header = codec("SegmentBatch").header
    segs = [_seg(seq=k, payload=b"p" * k) for k in range(5)]
    body = [_segment_bytes(s) for s in segs]
    blocks = (
        avro_long(-2) + avro_long(len(body[0]) + len(body[1])) + body[0] + body[1]  # negative count
        + avro_long(3) + body[2] + body[3] + body[4]
        + b"\x00"
    )  # fmt: skip
    msg = header + avro_long(4) + b"flow" + blocks
    assert serde._DEC_SEGMENTS(msg) == serde._generic_decode_segment_batch(msg) == segs
    # the flow id's length written in two bytes instead of one
    msg = header + b"\x88\x00" + b"flow" + avro_long(1) + body[0] + b"\x00"
    assert serde._DEC_SEGMENTS(msg) == serde._generic_decode_segment_batch(msg) == segs[:1]


def _outcome(fn, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(data))
    except CodecError as e:
        return ("error", str(e))


@settings(max_examples=150, deadline=None)
@given(st.lists(calls, min_size=1, max_size=2), st.data())
def test_corrupt_call_batches_fail_like_fastavro(batch: list[ApiCall], data: st.DataObject) -> None:
    msg = serde.encode_call_batch("flow", batch)
    cut = data.draw(st.integers(0, len(msg)))
    flip = data.draw(st.integers(10, len(msg) - 1))
    byte = data.draw(st.integers(0, 255))
    for bad in (msg[:cut], msg[:flip] + bytes([byte]) + msg[flip + 1 :], msg + b"\x00"):
        assert _outcome(serde.decode_call_batch, bad) == _outcome(
            serde._generic_decode_call_batch, bad
        )


@settings(max_examples=150, deadline=None)
@given(st.lists(segments, min_size=1, max_size=3), st.data())
def test_corrupt_segment_batches_fail_like_fastavro(
    batch: list[Segment], data: st.DataObject
) -> None:
    msg = serde.encode_segment_batch("flow", batch)
    cut = data.draw(st.integers(0, len(msg)))
    flip = data.draw(st.integers(10, len(msg) - 1))
    byte = data.draw(st.integers(0, 255))
    for bad in (msg[:cut], msg[:flip] + bytes([byte]) + msg[flip + 1 :]):
        assert _outcome(serde.decode_segment_batch, bad) == _outcome(
            serde._generic_decode_segment_batch, bad
        )


def test_a_message_that_is_not_bytes_decodes_the_generic_way() -> None:
    msg = serde.encode_segment_batch("f", [_seg()])
    for data in (bytearray(msg), memoryview(msg)):
        assert serde.decode_segment_batch(data) == serde._generic_decode_segment_batch(data)  # type: ignore[arg-type]


def test_record_maker_builds_the_same_record() -> None:
    make = record_maker(Segment)
    assert make is not Segment
    values = (1, "a", 2, "b", 3, 4, 5, 6, b"x", "n", "pcap", "tcp")
    assert make(*values) == Segment(*values)
    assert type(make(*values)) is Segment
    with pytest.raises(TypeError):
        make(*values[:-1])


def test_a_made_record_is_as_frozen_and_hashable_as_a_built_one() -> None:
    import dataclasses
    import pickle

    values = ("id", "http", 1, "a", 2, "b", 3, "tcp:a-b")
    built = ApiCall(*values)
    made = record_maker(ApiCall)(*(getattr(built, f) for f in ApiCall.__slots__))
    assert made == built and hash(made) == hash(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.status = 500  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(made)) == built
    assert dataclasses.replace(made, status=204).status == 204


@pytest.mark.parametrize(
    "odd",
    [
        (("a", b"bytes"),),  # not text: both raise
        (["a", "b"],),  # a list pair: not hashable, the generic way takes it
        (("a", "b", "c"),),  # three strings
        (("\ud800", "b"),),  # a lone surrogate
        tuple((f"h{i}", "v" * i) for i in range(70)),  # a two-byte count, long values
    ],
)
def test_header_arrays_seen_again_encode_the_same(odd: tuple) -> None:
    """Header arrays are remembered whole: a repeat, before and after an odd one, gives
    the same bytes as the generic path (and an odd one its error)."""
    usual = (("User-Agent", "wrk"), ("Accept", "*/*"), ("Authorization", "[REDACTED]"))
    calls = [
        ApiCall(str(i), "http", i, "a", 1, "b", 2, "f", request_headers=h, verdicts=usual)  # type: ignore[arg-type]
        for i, h in enumerate((usual, odd, usual, odd, ()))
    ]
    for batch in ([c] for c in calls):
        assert _raises(serde.encode_call_batch, "f", batch) == _raises(
            serde._generic_encode_call_batch, "f", batch
        )
        if _raises(serde._generic_encode_call_batch, "f", batch) is None:
            assert serde.encode_call_batch("f", batch) == serde._generic_encode_call_batch(
                "f", batch
            )
    good = [c for c in calls if _raises(serde._generic_encode_call_batch, "f", [c]) is None]
    assert serde.encode_call_batch("f", good) == serde._generic_encode_call_batch("f", good)
    usual_only = [calls[0], calls[2], calls[4]]
    assert serde._ENC_CALLS("f", usual_only) == serde._generic_encode_call_batch("f", usual_only)


def test_runs_of_repeating_fields_seen_again_encode_the_same() -> None:
    """Endpoints, status line and names are remembered as whole runs by their values: a
    repeat gives the generic path's bytes, and so do equal values of another type
    (True == 1 == 1.0), which must not find an int's remembered encoding."""
    base = dict(src_ip="10.0.0.1", dst_ip="10.0.0.2", flow_id="f", method="GET", status=200,
                reason="OK", response_version="HTTP/1.1", flags=("gap",), src_pod="p",
                verdicts=(("r", "pass"),))  # fmt: skip
    variants = [
        {}, {}, {"tls": 1}, {"tls": True}, {"src_port": True}, {"status": 200.0},
        {"flags": ["gap"]}, {"dst_service": "s"}, {},
    ]  # fmt: skip
    for i, extra in enumerate(variants):
        fields = {"src_port": 1, "dst_port": 80, **base, **extra}
        call = ApiCall(str(i), "http", i, **fields)  # type: ignore[arg-type]
        assert _raises(serde.encode_call_batch, "f", [call]) == _raises(
            serde._generic_encode_call_batch, "f", [call]
        )
        if _raises(serde._generic_encode_call_batch, "f", [call]) is None:
            generic = serde._generic_encode_call_batch("f", [call])
            assert serde.encode_call_batch("f", [call]) == generic
            assert serde.decode_call_batch(generic)[0].status == 200
