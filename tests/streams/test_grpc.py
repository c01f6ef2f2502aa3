"""gRPC on the HTTP/2 dissector: the golden capture (grpcio client and server) against what
the client sent and got, the schema-less protobuf view, and junk that must not break it."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dissect.grpc import (
    NotProtobuf,
    body_json,
    decode_message,
    grpc_message_text,
    message_view,
)
from streams.dissect.http2 import HTTP2
from tests.golden.protocols.dissect import dissect_pcap
from tests.streams.dissect_kit import calls_of
from tests.streams.test_http2 import (
    GRPC_PCAP,
    GRPC_RECS,
    Peer,
    data,
    opened,
    request,
    run,
)
from tests.streams.test_http2 import C as CLIENT
from tests.streams.test_http2 import S as SERVER

FACTS = json.loads((Path(GRPC_PCAP).with_name("basic.facts.json")).read_text())


def _one_or_list(values: list) -> object:
    return values[0] if len(values) == 1 else values


def test_golden_calls_are_what_the_grpc_client_did():
    calls = dissect_pcap(GRPC_PCAP)
    assert [c["request"]["path"] for c in calls] == [f["path"] for f in FACTS]
    for call, fact in zip(calls, FACTS, strict=True):
        req, resp = call["request"], call["response"]
        assert call["protocol"] == "grpc" and req["method"] == "POST"
        assert json.loads(req["body"]) == _one_or_list(fact["request"])
        if fact["response"]:
            assert json.loads(resp["body"]) == _one_or_list(fact["response"])
        else:
            assert resp["body"] == ""
        assert resp["status"] == fact["status"]
        assert resp["reason"] == fact["message"]
        assert resp["headers"][":status"] == "200"
        assert resp["headers"]["grpc-status"] == str(fact["status"])
        assert req["headers"]["content-type"] == "application/grpc"
        assert call["flags"] == []
        for name, value in fact.get("request_metadata", {}).items():
            assert req["headers"][name] == value
        for name, value in {
            **fact.get("initial_metadata", {}),
            **fact.get("trailing_metadata", {}),
        }.items():
            assert resp["headers"][name] == value
    upload = calls[2]
    assert upload["request"]["headers"]["grpc-encoding"] == "gzip"
    assert (
        upload["request"]["body_size"] < len(upload["request"]["body"]) / 3
    )  # compressed on the wire
    assert "no item named" in calls[3]["response"]["reason"]


def test_golden_flow_is_one_connection_with_four_streams():
    (rec,) = GRPC_RECS
    calls = calls_of(run_rec(rec))
    assert len({c.call_id for c in calls}) == 4
    assert all(c.src_port == rec.flow.client_port and c.dst_port == 21000 for c in calls)


def run_rec(rec):
    d = HTTP2(rec.flow)
    out = []
    for direction, ts, seq, p in rec.events:
        out += d.receive(direction, p, ts, seq)
    return out + d.close(10**19)


# ------------------------------------------------------------- the protobuf view


def test_wire_types_without_a_schema():
    msg = (
        b"\x08\x96\x01"  # 1: varint 150
        b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # 2: -1 as int64 (ten bytes)
        b"\x1d\x01\x00\x00\x00"  # 3: fixed32 1
        b"\x21" + (2).to_bytes(8, "little") +  # 4: fixed64 2
        b"\x2a\x02hi"  # 5: "hi" (a printable word, though it also parses as a message)
        b"\x32\x04\x08\x01\x10\x02"  # 6: nested {1: 1, 2: 2}
        b"\x3a\x03\xff\x00\x01"  # 7: bytes -> base64
        b"\x42\x01a\x42\x01b"  # 8: repeated "a", "b"
        b"\x4a\x00"  # 9: empty
    )  # fmt: skip
    assert decode_message(msg) == {
        "1": 150,
        "2": 2**64 - 1,
        "3": 1,
        "4": 2,
        "5": "hi",
        "6": {"1": 1, "2": 2},
        "7": base64.b64encode(b"\xff\x00\x01").decode(),
        "8": ["a", "b"],
        "9": "",
    }


def test_not_protobuf_falls_back_to_text_or_base64():
    assert message_view(b"") == {}
    assert message_view(b'{"json": "codec"}') == '{"json": "codec"}'  # wire type 3: not protobuf
    assert message_view(b"\x0f\xff") == base64.b64encode(b"\x0f\xff").decode()
    for bad in (b"\x08", b"\x0a\x05ab", b"\x07\x01", b"\x00\x01", b"\x08" + b"\xff" * 11):
        try:
            decode_message(bad)
        except NotProtobuf:
            continue
        raise AssertionError(f"{bad!r} parsed")


def test_body_json_frames_and_compression():
    one = b"\x00\x00\x00\x00\x02\x08\x07"
    packed = gzip.compress(b"\x08\x09")
    two = one + b"\x01" + len(packed).to_bytes(4, "big") + packed
    assert body_json(one, "", 1000) == (b'{"1":7}', [])
    assert body_json(two, "gzip", 1000) == (b'[{"1":7},{"1":9}]', [])
    assert body_json(two, "snappy", 1000)[1] == ["decode_error"]
    assert body_json(one + b"\x00\x00\x00\x00\x09\x08", "", 1000) == (
        b'{"1":7}',
        ["grpc_message_cut"],
    )
    assert body_json(b"", "", 1000) == (b"", [])


def test_grpc_message_is_percent_decoded():
    assert grpc_message_text("no%20item%20%E2%80%9Cx%E2%80%9D") == "no item “x”"
    assert grpc_message_text("100%") == "100%"


def test_trailers_only_error_and_reset_stream():
    client, server, steps = opened()
    grpc_req = request("/pkg.Svc/Do", "POST", extra=[("content-type", "application/grpc")])
    req = client.headers(1, grpc_req) + data(1, b"\x00\x00\x00\x00\x02\x08\x01", True)
    req += client.headers(3, grpc_req) + data(3, b"\x00\x00\x00\x00\x00")
    only = [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "5")]
    resp = server.headers(1, [*only, ("grpc-message", "not%20found")], end_stream=True)
    from hyperframe.frame import RstStreamFrame

    cancel = RstStreamFrame(3, error_code=8).serialize()
    calls = {
        c.call_id: c for c in calls_of(run(*steps, (CLIENT, req), (SERVER, resp), (CLIENT, cancel)))
    }
    first, second = sorted(calls.values(), key=lambda c: c.ts_ns + len(c.flags))
    assert (first.protocol, first.status, first.reason) == ("grpc", 5, "not found")
    assert first.request_body == b'{"1":1}'
    assert second.protocol == "grpc" and "reset" in second.flags and second.request_body == b"{}"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_break_the_protobuf_view(blob):
    json.dumps(message_view(blob))
    body, flags = body_json(blob, "gzip", 4096)
    if body:
        json.loads(body)


WORDS = st.text(st.characters(categories=["L", "N", "P", "Zs"]), max_size=8)
FIELD = st.integers(1, 3).map(str)  # tags below 0x20: a nested message is never printable


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.dictionaries(FIELD, st.integers(0, 2**64 - 1) | WORDS, min_size=1),
        lambda inner: st.dictionaries(FIELD, inner, min_size=1),
        max_leaves=10,
    )
)
def test_encoded_messages_decode_to_their_fields(fields):
    """Messages of numbers, words and nested messages read back as built (without the
    schema a nested message made only of printable bytes would read as a word)."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            b, n = n & 0x7F, n >> 7
            if not n:
                return out + bytes([b])
            out += bytes([b | 0x80])

    def encode(msg: dict) -> bytes:
        out = b""
        for k, v in msg.items():
            if isinstance(v, int):
                out += varint(int(k) << 3) + varint(v)
            else:
                payload = encode(v) if isinstance(v, dict) else v.encode()
                out += varint(int(k) << 3 | 2) + varint(len(payload)) + payload
        return out

    assert decode_message(encode(fields)) == fields


def test_peer_helper_is_real_hpack():
    assert Peer().headers(1, [(":status", "200")])[3] == 1  # a HEADERS frame
