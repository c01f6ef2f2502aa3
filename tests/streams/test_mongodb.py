"""MongoDB dissector: the golden capture (pymongo against FerretDB) checked against what
pymongo saw, the BSON decoder against pymongo's own (relaxed Extended JSON), legacy and
compressed messages on hand-made bytes, and Hypothesis properties."""

from __future__ import annotations

import datetime as dt
import json
import struct
import zlib
from pathlib import Path

import bson as pybson
from bson import json_util
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records import ApiCall
from streams.dissect.base import DissectFailed
from streams.dissect.mongodb import MONGODB, MongoDissector, bson
from streams.reassembly.events import Flow
from tests.streams.dissect_kit import (
    JUNK_STEPS,
    C,
    S,
    assert_capped,
    call_header,
    calls_of,
    dialog_chunks,
    flows_in,
    replay,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "mongodb"
FLOWS = flows_in(GOLDEN / "basic.pcap")
FACTS = json.loads((GOLDEN / "basic.client.json").read_text())


def golden_calls() -> list[ApiCall]:
    out = []
    for flow, chunks in FLOWS:
        events = replay(MONGODB, flow, chunks)
        assert not [e for e in events if isinstance(e, DissectFailed)]
        out += calls_of(events)
    return sorted(out, key=lambda c: c.ts_ns)


def header(call: ApiCall, name: str) -> str | None:
    return call_header(call, name, response=True)


def test_golden_commands_match_what_pymongo_did():
    calls = [c for c in golden_calls() if c.method not in ("ismaster", "hello", "endSessions")]
    assert [c.method for c in calls] == [f["op"] for f in FACTS]
    for call, fact in zip(calls, FACTS, strict=True):
        request, reply = json.loads(call.request_body), json.loads(call.response_body)
        assert call.path == ("shop.items" if fact["op"] != "noSuchCommand" else "shop")
        assert "no_response" not in call.flags
        if fact.get("duplicate"):
            assert call.status == fact["code"] and call.reason.startswith("E11000")
        elif "code" in fact:
            assert (call.status, call.reason) == (fact["code"], fact["errmsg"])
        else:
            assert call.status == 0 and reply["ok"] == 1
        if fact["op"] == "insert" and "n" in fact:
            assert len(request["documents"]) == reply["n"] == fact["n"]
        if fact["op"] in ("find", "aggregate"):
            assert reply["cursor"]["firstBatch"] == fact["docs"]
            assert header(call, "documents") == str(len(fact["docs"]))
        if fact["op"] == "find":
            assert request["filter"] == fact["filter"]
        if fact["op"] in ("update", "delete"):
            assert reply["n"] == fact["n"]


def test_handshake_names_the_client():
    hello = golden_calls()[0]
    assert hello.method.lower() in ("ismaster", "hello") and hello.path == "admin"
    assert json.loads(hello.request_body)["client"]["application"]["name"] == "wiretide-golden"


# ------------------------------------------------------------------- BSON

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20).map(lambda b: pybson.Binary(b, 0))
    | st.binary(min_size=12, max_size=12).map(pybson.ObjectId)
    | st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(9999, 1, 1)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=dt.UTC)
    )
    | st.decimals(min_value=-(10**20), max_value=10**20, places=4).map(pybson.Decimal128)
)
documents = st.recursive(
    st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: "\0" not in k), scalars,
                    max_size=5),
    lambda inner: st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: "\0" not in k),
        inner | st.lists(inner | scalars, max_size=4),
        max_size=4,
    ),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(doc=documents)
def test_bson_decoder_agrees_with_pymongo(doc):
    raw = pybson.encode(doc)
    want = json.loads(
        json_util.dumps(pybson.decode(raw), json_options=json_util.RELAXED_JSON_OPTIONS)
    )
    assert json.loads(json.dumps(bson.decode(raw))) == want


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=80))
def test_bson_decoder_rejects_junk_cleanly(raw):
    try:
        bson.decode(raw)
    except bson.BsonError:
        pass


# ---------------------------------------------------------- hand-made messages

FLOW = Flow("tcp:10.0.0.1:40000-10.0.0.2:27017", "10.0.0.1", 40000, "10.0.0.2", 27017)


def op_msg(request_id: int, response_to: int, doc: dict, flags: int = 0, checksum=False) -> bytes:
    body = struct.pack("<I", flags | (1 if checksum else 0)) + b"\0" + pybson.encode(doc)
    if checksum:
        body += b"\x12\x34\x56\x78"
    return struct.pack("<iiii", 16 + len(body), request_id, response_to, 2013) + body


def compressed(message: bytes, compressor: int) -> bytes:
    original = struct.unpack_from("<i", message, 12)[0]
    inner = message[16:]
    packed = zlib.compress(inner) if compressor == 2 else inner
    body = struct.pack("<iiB", original, len(inner), compressor) + packed
    head = struct.unpack_from("<ii", message, 4)
    return struct.pack("<iiii", 16 + len(body), *head, 2012) + body


def run(*steps) -> list:
    return replay(MONGODB, FLOW, dialog_chunks(steps))


def test_legacy_op_query_hello_and_op_reply():
    query = struct.pack("<i", 0) + b"admin.$cmd\0" + struct.pack("<ii", 0, -1)
    query += pybson.encode({"isMaster": 1, "client": {"application": {"name": "x"}}})
    request = struct.pack("<iiii", 16 + len(query), 7, 0, 2004) + query
    reply_doc = pybson.encode({"ismaster": True, "maxWireVersion": 17, "ok": 1.0})
    reply = struct.pack("<iqii", 8, 0, 0, 1) + reply_doc
    response = struct.pack("<iiii", 16 + len(reply), 99, 7, 1) + reply
    (call,) = calls_of(run((C, request), (S, response)))
    assert (call.method, call.path, call.status) == ("isMaster", "admin", 0)
    assert json.loads(call.response_body)["maxWireVersion"] == 17
    assert header(call, "op") == "OP_REPLY" and header(call, "documents") == "1"
    assert MONGODB.probe(request) == 1.0


def test_compressed_zlib_is_read_and_snappy_is_named():
    find = op_msg(5, 0, {"find": "items", "filter": {}, "$db": "shop"}, checksum=True)
    done = op_msg(6, 5, {"cursor": {"firstBatch": [{"a": 1}], "id": 0}, "ok": 1.0})
    (call,) = calls_of(run((C, compressed(find, 2)), (S, compressed(done, 2))))
    assert (call.method, call.path) == ("find", "shop.items")
    assert dict(call.request_headers)["compressor"] == "zlib"
    assert json.loads(call.response_body)["cursor"]["firstBatch"] == [{"a": 1}]
    (call,) = calls_of(run((C, compressed(find, 1)), (S, compressed(done, 1))))
    assert call.method == "OP_COMPRESSED" and dict(call.request_headers)["compressor"] == "snappy"
    assert call.status == 0 and call.response_ts_ns


def test_pairing_by_response_to_and_no_reply_for_more_to_come():
    a = op_msg(1, 0, {"ping": 1, "$db": "admin"})
    b = op_msg(2, 0, {"insert": "logs", "$db": "app", "documents": [{"x": 1}]}, flags=2)
    c = op_msg(3, 0, {"count": "logs", "$db": "app"})
    events = run(
        (C, a + b + c), (S, op_msg(10, 3, {"n": 4, "ok": 1})), (S, op_msg(11, 1, {"ok": 1}))
    )
    fire, count, ping = calls_of(events)
    assert (fire.method, fire.flags) == ("insert", ("more_to_come",))
    assert (count.method, header(count, "n")) == ("count", "4")
    assert ping.method == "ping" and ping.status == 0


def test_sasl_payloads_are_never_recorded():
    secret = pybson.Binary(b"n,,n=app,r=hunter2-nonce")
    start = op_msg(1, 0, {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": secret,
                          "$db": "admin"})  # fmt: skip
    reply = op_msg(2, 1, {"conversationId": 1, "done": False, "payload": secret, "ok": 1})
    (call,) = calls_of(run((C, start), (S, reply)))
    assert call.method == "saslStart" and "hunter2" not in repr(call)
    assert b"aHVudGVy" not in call.request_body + call.response_body  # base64 of it


def test_error_and_lost_bytes():
    d = MONGODB(FLOW)
    d.receive(C, op_msg(1, 0, {"find": "x", "$db": "d"}), 1, 1)
    events = d.gap(S, 10, 2)
    (call,) = calls_of(events)
    assert "gap" in call.flags and "no_response" in call.flags and d.idle
    events = run((C, b"\xff" * 40))
    assert [type(e) for e in events] == [DissectFailed]


def test_huge_message_is_cut_without_buffering_it():
    d = MongoDissector(FLOW, max_message=1024)
    doc = pybson.encode({"insert": "blobs", "$db": "d", "data": pybson.Binary(b"x" * 3_000_000)})
    body = struct.pack("<I", 0) + b"\0" + doc
    msg = struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body
    seq = 1
    for k in range(0, len(msg), 65536):
        d.receive(C, msg[k : k + 65536], 1, seq)
        seq += len(msg[k : k + 65536])
        assert d.buffered <= 2 * (1024 + 16)
    (call,) = calls_of(d.receive(S, op_msg(2, 1, {"n": 1, "ok": 1}), 2, 1))
    assert call.method == "insert" and "request_truncated" in call.flags


def test_probe():
    assert MONGODB.probe(op_msg(1, 0, {"ping": 1})) == 1.0
    assert MONGODB.probe(op_msg(1, 5, {"ok": 1})) == 0.0  # a reply, not a request
    assert MONGODB.probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0.0


# ----------------------------------------------------------------- properties
# Framing, gaps, close and fuzz over the golden capture: tests/streams/test_dissector_contract.py


@settings(max_examples=300, deadline=None)
@given(junk=JUNK_STEPS)
def test_junk_keeps_the_buffers_under_the_cap(junk):
    d = MongoDissector(FLOW, max_message=256)
    assert_capped(d, [(C, op_msg(1, 0, {"ping": 1})), *junk], 2 * (256 + 16) + 4096)
