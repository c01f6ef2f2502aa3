"""AMQP 0-9-1 dissector: the golden capture (RabbitMQ driven by pika, see
tests/golden/protocols/amqp/record.py) against what the client sent and got back, edge
cases on hand-made frames, and Hypothesis properties (after junk or a gap the flow goes on;
buffers stay capped). Framing, gaps, close and fuzz over the captures:
tests/streams/test_dissector_contract.py."""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import ApiCall, flow_id
from streams.dissect.amqp import AMQP, AmqpDissector, AmqpFactory
from streams.dissect.base import DissectFailed
from streams.dissect.registry import default_registry
from streams.reassembly.events import Direction, Flow
from tests.golden.protocols.dissect import dissect_pcap
from tests.streams.dissect_kit import TIME_FIELDS, C, S, calls_of, flows_in, header

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "amqp"
PCAP = GOLDEN / "basic.pcap"
FACTS = json.loads((GOLDEN / "basic.facts.json").read_text())


def timeless(calls: list[ApiCall]) -> list[ApiCall]:
    return sorted(
        (replace(c, **{f: 0 if f != "call_id" else "" for f in TIME_FIELDS}) for c in calls),
        key=lambda c: (c.method, c.path, c.request_headers, c.request_body, c.flags),
    )


# ----------------------------------------------------------------- the recording


[(FLOW, STEPS)] = flows_in(PCAP)  # the golden capture's one connection


def run(steps, flow: Flow = FLOW, **caps) -> list:
    d = AmqpDissector(flow, **caps)
    out = []
    for direction, data, ts, seq in steps:
        out += d.receive(direction, data, ts, seq)
    return out + d.close(0)


BASELINE = run(STEPS)
RAW = calls_of(BASELINE)  # before redaction: routing keys as sent
VIEWS = [c for c in dissect_pcap(PCAP) if c["protocol"] == "amqp"]


# ------------------------------------------------------------ golden vs the client


def test_the_recording_dissects_cleanly():
    assert not [e for e in BASELINE if isinstance(e, DissectFailed)]
    assert len(RAW) == len(VIEWS) == 37
    assert {c.flow_id for c in RAW} == {FLOW.flow_id}
    # every synchronous call found its reply; nothing was left half-read
    assert not [c for c in RAW if {"no_response", "no_request"} & set(c.flags)]
    assert not [c for c in RAW if any(f.endswith(("incomplete", "truncated")) for f in c.flags)]


def test_handshake_and_setup_calls_in_order():
    setup = [(v["request"]["method"], v["request"]["path"]) for v in VIEWS[:8]]
    assert setup == [
        ("connection.start", ""),
        ("connection.tune", ""),
        ("connection.open", "/"),
        ("channel.open", ""),
        ("exchange.declare", "wt.orders"),
        ("queue.declare", "wt.orders.q"),
        ("queue.bind", "wt.orders.q"),
        ("basic.qos", ""),
    ]
    start, tune = VIEWS[0], VIEWS[1]
    assert start["flags"] == ["push"] and tune["flags"] == ["push"]
    assert json.loads(start["request"]["body"])["server-properties"]["product"] == "RabbitMQ"
    start_ok = json.loads(start["response"]["body"])
    assert start_ok["client-properties"]["product"] == "wt-rec"
    assert start_ok["mechanism"] == "PLAIN" and "response" not in start_ok  # no credentials
    assert json.loads(tune["response"]["body"])["frame-max"] == 4096  # pika's frame_max
    declare_ok = json.loads(VIEWS[5]["response"]["body"])
    assert declare_ok == {
        "queue": FACTS["queue_declare_ok"]["queue"],
        "message-count": FACTS["queue_declare_ok"]["message_count"],
        "consumer-count": FACTS["queue_declare_ok"]["consumer_count"],
    }
    assert VIEWS[5]["response"]["headers"]["method"] == "queue.declare-ok"
    bind = [c for c in RAW if c.method == "queue.bind"][0]
    assert header(bind.request_headers, "routing-key") == "order.created"
    assert header(bind.request_headers, "exchange") == "wt.orders"


def _message_headers(fact: dict) -> dict[str, str]:
    want = {}
    for name in ("content_type", "delivery_mode", "correlation_id", "reply_to", "message_id"):
        if name in fact:
            want[name.replace("_", "-")] = str(fact[name])
    for name, value in fact.get("headers", {}).items():
        want[name] = str(value)
    return want


def test_publishes_carry_what_the_client_sent():
    publishes = [
        c
        for c in RAW
        if c.method == "basic.publish" and header(c.request_headers, "channel") == "1"
    ]
    for call, fact in zip(publishes, FACTS["published"], strict=False):
        assert call.path == f"{fact['exchange']}/{fact['routing_key']}"
        assert header(call.request_headers, "exchange") == fact["exchange"]
        assert header(call.request_headers, "routing-key") == fact["routing_key"]
        assert call.request_body_size == fact["body_size"]
        assert call.request_body.decode().startswith(fact["body_head"])
        assert len(call.request_body) == fact["body_size"]  # 10800 bytes over three frames
        got = dict(call.request_headers)
        assert {k: got.get(k) for k in _message_headers(fact)} == _message_headers(fact)
        assert call.flags == ("oneway",) and call.response_ts_ns == 0
    assert len(publishes) == len(FACTS["published"]) + 1  # and the one to a missing exchange


def test_deliveries_are_pushed_with_their_messages():
    delivers = [c for c in RAW if c.method == "basic.deliver"]
    assert len(delivers) == len(FACTS["delivered"])
    for call, fact in zip(delivers, FACTS["delivered"], strict=True):
        assert call.flags == ("push",)
        assert call.path == f"{fact['exchange']}/{fact['routing_key']}"
        assert header(call.request_headers, "consumer-tag") == fact["consumer_tag"]
        assert header(call.request_headers, "delivery-tag") == str(fact["delivery_tag"])
        assert call.response_body_size == fact["body_size"]
        assert call.response_body.decode().startswith(fact["body_head"])
        got = dict(call.response_headers)
        assert {k: got.get(k) for k in _message_headers(fact)} == _message_headers(fact)
    acks = [c for c in RAW if c.method == "basic.ack" and "oneway" in c.flags]
    assert [header(c.request_headers, "delivery-tag") for c in acks] == [
        str(f["delivery_tag"]) for f in FACTS["delivered"]
    ]


def test_basic_get_pairs_with_get_ok_then_get_empty():
    gets = [c for c in RAW if c.method == "basic.get"]
    assert [c.path for c in gets] == ["wt.orders.q", "wt.orders.q"]
    ok, empty = gets
    assert header(ok.response_headers, "method") == "basic.get-ok"
    assert header(ok.response_headers, "delivery-tag") == str(FACTS["get_ok"]["delivery_tag"])
    assert ok.response_body == FACTS["get_ok"]["body"].encode()
    assert header(ok.response_headers, "correlation-id") == "corr-4"
    assert FACTS["get_empty"] and header(empty.response_headers, "method") == "basic.get-empty"
    assert empty.status == 0 and empty.response_body == b""
    reject = [c for c in RAW if c.method == "basic.reject"][0]
    assert json.loads(reject.request_body) == {"delivery-tag": 4, "requeue": False}


def test_publisher_confirm_is_a_push_ack_on_its_channel():
    channel = str(FACTS["confirmed_channel"])
    on_channel = [c for c in RAW if header(c.request_headers, "channel") == channel]
    assert [(c.method, c.flags) for c in on_channel] == [
        ("channel.open", ()),
        ("confirm.select", ()),
        ("basic.publish", ("oneway",)),
        ("basic.ack", ("push",)),
        ("channel.close", ()),
    ]


def test_broker_closes_fail_the_waiting_call():
    failed = [c for c in RAW if c.status]
    assert [(c.method, c.status, c.reason) for c in failed] == [
        ("queue.declare", e["code"], e["text"]) for e in FACTS["errors"]
    ]
    missing_queue, after_bad_publish = failed
    assert missing_queue.path == "wt.no-such-queue"
    assert header(missing_queue.response_headers, "method") == "channel.close"
    assert header(missing_queue.response_headers, "failed-method") == "queue.declare"
    # pika's passive declare was waiting when the broker closed the channel over the
    # earlier publish to a missing exchange: the close names the publish
    assert header(after_bad_publish.response_headers, "failed-method") == "basic.publish"
    # the client's close-ok was absorbed, not reported as a call of its own
    assert not [c for c in RAW if "no_request" in c.flags]


def test_view_keeps_the_routing_key_in_the_path():
    publish = [v for v in VIEWS if v["request"]["method"] == "basic.publish"][0]
    assert publish["request"]["path"] == "wt.orders/order.created"
    assert publish["request"]["body"] == '{"order": 1, "item": "tea"}'


# ---------------------------------------------------------- the extras capture

EXTRAS_FACTS = json.loads((GOLDEN / "extras.facts.json").read_text())
EXTRAS = [c for c in dissect_pcap(GOLDEN / "extras.pcap") if c["protocol"] == "amqp"]


def _extras(method: str) -> list[dict]:
    return [v for v in EXTRAS if v["request"]["method"] == method]


def test_mandatory_publish_comes_back_as_a_pushed_return():
    fact = EXTRAS_FACTS["returned"]
    (ret,) = _extras("basic.return")
    assert ret["flags"] == ["push"]
    assert ret["request"]["path"] == f"{fact['exchange']}/{fact['routing_key']}"
    assert (ret["response"]["status"], ret["response"]["reason"]) == (
        fact["reply_code"],
        fact["reply_text"],
    )
    assert ret["response"]["body"] == fact["body"]
    publish = _extras("basic.publish")[0]
    assert publish["request"]["headers"]["mandatory"] == "true"


def test_server_named_queue_bindings_and_transaction():
    queue = EXTRAS_FACTS["server_named_queue"]
    declare = _extras("queue.declare")[0]
    assert declare["request"]["headers"]["queue"] == ""
    assert declare["request"]["path"] == queue  # named by the broker's declare-ok
    (bind,) = _extras("exchange.bind")
    assert (bind["request"]["headers"]["source"], bind["request"]["path"]) == (
        "wt.fanout",
        "wt.topic",
    )
    channel = str(EXTRAS_FACTS["tx_channel"])
    in_tx = [
        v["request"]["method"] for v in EXTRAS if v["request"]["headers"]["channel"] == channel
    ]
    assert in_tx == [
        "channel.open",
        "tx.select",
        "basic.publish",
        "basic.publish",
        "tx.commit",
        "channel.close",
    ]
    (get,) = _extras("basic.get")
    assert get["request"]["path"] == queue
    assert get["response"]["body"] == EXTRAS_FACTS["get_ok"]["body"]
    (nack,) = _extras("basic.nack")
    assert json.loads(nack["request"]["body"])["requeue"] is False
    (purge,) = _extras("queue.purge")
    assert json.loads(purge["response"]["body"]) == {"message-count": EXTRAS_FACTS["purged"]}
    assert [v["response"]["headers"]["method"] for v in _extras("basic.recover")] == [
        "basic.recover-ok"
    ]


def test_missing_vhost_fails_connection_open():
    refused = EXTRAS_FACTS["refused"]
    assert "530" in refused["detail"]
    opens = _extras("connection.open")
    assert [o["request"]["path"] for o in opens] == ["/", "wt-no-such-vhost"]
    failed = opens[1]["response"]
    assert failed["status"] == 530 and failed["reason"] in refused["detail"]
    assert failed["headers"]["failed-method"] == "connection.open"
    # heartbeats flowed (heartbeat=1 and a 2.5 s sleep) and left no trace
    assert not [v for v in EXTRAS if set(v["flags"]) & {"no_request", "no_response"}]


def test_registry_picks_amqp_from_the_first_bytes_on_any_port():
    flow = Flow(flow_id("10.0.0.1", 40000, "10.0.0.2", 9999), "10.0.0.1", 40000, "10.0.0.2", 9999)
    assert default_registry().detect(flow, STEPS[0][1]) is AMQP
    assert default_registry().detect(flow, STEPS[1][1]) is AMQP  # connection.start
    assert default_registry().detect(flow, b"GET / HTTP/1.1\r\n") is not AMQP


# ---------------------------------------------------------------- hand-made frames


def shortstr(s: str) -> bytes:
    b = s.encode()
    return bytes([len(b)]) + b


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def method(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def content(channel: int, body: bytes, props: bytes = b"\x00\x00") -> bytes:
    header = frame(2, channel, struct.pack(">HHQ", 60, 0, len(body)) + props)
    return header + (frame(3, channel, body) if body else b"")


def queue_declare(channel: int, queue: str, passive: bool = False) -> bytes:
    return method(channel, 50, 10, b"\x00\x00" + shortstr(queue) + bytes([passive]) + b"\0\0\0\0")


def declare_ok(channel: int, queue: str) -> bytes:
    return method(channel, 50, 11, shortstr(queue) + struct.pack(">II", 0, 0))


def close(channel: int, code: int, text: str, class_id: int = 0, method_id: int = 0) -> bytes:
    cid = 10 if channel == 0 else 20
    args = struct.pack(">H", code) + shortstr(text) + struct.pack(">HH", class_id, method_id)
    return method(channel, cid, 50 if cid == 10 else 40, args)


def publish(
    channel: int, exchange: str, key: str, body: bytes, props: bytes = b"\x00\x00"
) -> bytes:
    args = b"\x00\x00" + shortstr(exchange) + shortstr(key) + b"\x00"
    return method(channel, 60, 40, args) + content(channel, body, props)


def dialog(*steps: tuple[Direction, bytes], **caps) -> list:
    d = AmqpDissector(FLOW, **caps)
    out = []
    for k, (direction, data) in enumerate(steps):
        out += d.receive(direction, data, 1000 + k, 0)
    return out + d.close(10_000)


def test_broker_close_with_nothing_waiting_is_its_own_call():
    calls = calls_of(
        dialog(
            (C, publish(3, "nope", "k", b"x")),
            (S, close(3, 404, "NOT_FOUND - x", 60, 40)),
            (C, method(3, 20, 41)),
        )
    )
    assert [(c.method, c.status, c.reason, c.flags) for c in calls] == [
        ("basic.publish", 0, "", ("oneway",)),
        ("channel.close", 404, "NOT_FOUND - x", ("push",)),
    ]
    assert header(calls[1].response_headers, "method") == "channel.close-ok"


def test_connection_close_fails_calls_on_every_channel():
    calls = calls_of(dialog(
        (C, queue_declare(1, "a") + queue_declare(2, "b")),
        (S, close(0, 541, "INTERNAL_ERROR")),
        (C, method(0, 10, 51)),
    ))  # fmt: skip
    assert sorted((c.path, c.status, c.reason) for c in calls) == [
        ("a", 541, "INTERNAL_ERROR"),
        ("b", 541, "INTERNAL_ERROR"),
    ]


def test_replies_pair_per_channel_not_in_global_order():
    calls = calls_of(dialog(
        (C, queue_declare(1, "one") + queue_declare(2, "two")),
        (S, declare_ok(2, "two") + declare_ok(1, "one")),
    ))  # fmt: skip
    assert sorted((c.path, json.loads(c.response_body)["queue"]) for c in calls) == [
        ("one", "one"),
        ("two", "two"),
    ]


def test_server_named_queue_takes_its_name_from_declare_ok():
    calls = calls_of(dialog((C, queue_declare(1, "")), (S, declare_ok(1, "amq.gen-42"))))
    assert calls[0].path == "amq.gen-42"


def test_unanswered_and_orphan_calls_are_flagged():
    calls = calls_of(dialog((C, queue_declare(1, "q")), (S, declare_ok(2, "other"))))
    assert sorted((c.method, c.flags) for c in calls) == [
        ("queue.declare", ("no_request",)),
        ("queue.declare", ("no_response",)),
    ]


def test_basic_return_is_pushed_with_reply_code():
    args = struct.pack(">H", 312) + shortstr("NO_ROUTE") + shortstr("ex") + shortstr("rk")
    data = method(1, 60, 50, args) + content(1, b"bounced")
    (call,) = calls_of(dialog((S, data)))
    assert (call.method, call.path, call.status, call.reason) == (
        "basic.return",
        "ex/rk",
        312,
        "NO_ROUTE",
    )
    assert call.flags == ("push",) and call.response_body == b"bounced"


def test_properties_and_headers_table():
    table = shortstr("n") + b"I" + struct.pack(">i", -5) + shortstr("t") + b"t\x01"
    table += shortstr("d") + b"D\x02" + struct.pack(">i", 314) + shortstr("a") + b"A"
    table += struct.pack(">I", 3) + b"b\xff" + b"V"  # [-1, None]
    props = struct.pack(">H", 0x8000 | 0x2000 | 0x1000 | 0x0040)
    props += shortstr("application/json") + struct.pack(">I", len(table)) + table + b"\x02"
    props += struct.pack(">Q", 1700000000)
    (call,) = calls_of(dialog((C, publish(1, "ex", "rk", b'{"a": 1}', props))))
    got = dict(call.request_headers)
    assert got["content-type"] == "application/json"
    assert got["delivery-mode"] == "2" and got["timestamp"] == "1700000000"
    assert (got["n"], got["t"], got["d"], got["a"]) == ("-5", "true", "3.14", "[-1,null]")


def test_body_cap_keeps_the_size_and_flags_truncation():
    body = bytes(range(256)) * 40
    (call,) = calls_of(dialog((C, publish(1, "", "q", body)), max_body=1000))
    assert call.request_body == body[:1000] and call.request_body_size == len(body)
    assert "request_truncated" in call.flags


def test_gap_inside_a_body_keeps_the_call():
    data = publish(1, "ex", "rk", b"A" * 3000)
    cut = len(data) - 1500
    d = AmqpDissector(FLOW)
    out = (
        d.receive(C, data[:cut], 1, 0) + d.gap(C, 1000, 2) + d.receive(C, data[cut + 1000 :], 3, 0)
    )
    (call,) = calls_of(out)
    assert call.request_body_size == 3000 and "gap" in call.flags
    assert d.idle


def test_lost_reply_is_not_paired_with_the_next_request():
    d = AmqpDissector(FLOW)
    out = d.receive(C, queue_declare(1, "first"), 1, 0)
    out += d.gap(S, 40, 2)
    out += d.receive(C, queue_declare(1, "second"), 3, 0)
    out += d.receive(S, declare_ok(1, "second"), 4, 0)
    calls = calls_of(out + d.close(5))
    assert sorted((c.path, c.flags) for c in calls) == [
        ("first", ("gap", "no_response")),
        ("second", ()),
    ]


def test_roles_from_the_frames_when_the_capture_guessed_wrong():
    (call,) = calls_of(dialog((S, queue_declare(1, "q")), (C, declare_ok(1, "q"))))
    assert (call.src_port, call.dst_port) == (FLOW.server_port, FLOW.client_port)
    assert call.flags == ()


def test_amqp_1_0_goes_opaque():
    d = AmqpDissector(FLOW)
    out = d.receive(C, b"AMQP\x00\x01\x00\x00" + queue_declare(1, "q"), 1, 0)
    assert [type(e) for e in out] == [DissectFailed] and d.opaque and d.idle


def test_junk_then_frames_resyncs():
    out = dialog(
        (C, b"\x00garbage\xce\x01\x02" * 20 + queue_declare(1, "q")), (S, declare_ok(1, "q"))
    )
    assert [type(e) for e in out] == [DissectFailed, ApiCall]
    assert calls_of(out)[0].path == "q"


def test_junk_announcing_a_huge_body_frame_does_not_swallow_the_flow():
    d = AmqpDissector(FLOW)
    out = d.receive(C, b"\x03\x00\x00\x00", 1, 0)  # a body frame head cut short
    for direction, chunk, ts, seq in STEPS:
        out += d.receive(direction, chunk, ts, seq)
    assert [type(e) for e in out][:1] == [DissectFailed]
    assert timeless(calls_of(out + d.close(0))) == timeless(RAW)


def test_pending_calls_are_capped():
    d = AmqpDissector(FLOW, max_pending=3)
    out = d.receive(C, b"".join(queue_declare(1, f"q{k}") for k in range(5)), 1, 0)
    assert [c.path for c in calls_of(out)] == ["q0", "q1"]
    assert all(c.flags == ("no_response",) for c in calls_of(out))


def test_idle_only_between_messages():
    d = AmqpDissector(FLOW)
    data = queue_declare(1, "q")
    d.receive(C, data[:5], 1, 0)
    assert not d.idle
    d.receive(C, data[5:], 2, 0)
    assert not d.idle  # waiting for declare-ok
    d.receive(S, declare_ok(1, "q"), 3, 0)
    assert d.idle


def test_probe():
    assert AMQP.probe(b"AMQP\x00\x00\x09\x01") == 1.0
    assert AMQP.probe(b"AMQP\x00\x01\x00\x00") == 0.0  # AMQP 1.0
    assert AMQP.probe(b"AMQP") >= 0.5
    assert AMQP.probe(STEPS[1][1]) == 0.9  # connection.start, mid-connection
    assert AMQP.probe(b"\x08\x00\x00\x00\x00\x00\x00\xce") == 0.8
    for other in (b"GET / HTTP/1.1\r\n", b"*1\r\n$4\r\nPING\r\n", b"\x16\x03\x01\x02\x00",
                  b"\x00\x00\x00\x08\x04\xd2\x16\x2f", b"PRI * HTTP/2.0\r\n", b""):  # fmt: skip
        assert AMQP.probe(other) < 0.5


# ------------------------------------------------------------------ properties

PROPS = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(junk=st.lists(st.tuples(st.sampled_from([C, S]), st.binary(max_size=300)), max_size=8))
def test_junk_never_raises_and_the_flow_goes_on(junk):
    d = AmqpDissector(FLOW)
    out = []
    for direction, chunk in junk:
        out += d.receive(direction, chunk, 1, 0)
    for direction, chunk, ts, seq in STEPS:
        out += d.receive(direction, chunk, ts, seq)
    out += d.close(0)
    assert all(isinstance(e, (ApiCall, DissectFailed)) for e in out)
    got = Counter(c.method for c in calls_of(out))
    assert got["basic.publish"] >= 6 and got["basic.deliver"] >= 3


@PROPS
@given(data=st.data())
def test_after_a_lost_chunk_the_flow_still_reaches_connection_close(data):
    lost = data.draw(st.integers(0, len(STEPS) - 5))
    d = AmqpDissector(FLOW)
    out = []
    for k, (direction, chunk, ts, seq) in enumerate(STEPS):
        if k == lost:
            out += d.gap(direction, len(chunk), ts)
        else:
            out += d.receive(direction, chunk, ts, seq)
    assert "connection.close" in {c.method for c in calls_of(out + d.close(0))}


@PROPS
@given(data=st.data(), junk=st.binary(max_size=2000))
def test_buffers_stay_under_the_cap(data, junk):
    caps = dict(max_frame=4096, max_body=1000, max_held=1500)
    cap = 2 * (caps["max_frame"] + 8) + caps["max_held"]
    d = AmqpFactory(**caps)(FLOW)
    steps = list(STEPS)
    at = data.draw(st.integers(0, len(steps)))
    steps.insert(at, (data.draw(st.sampled_from([C, S])), junk, 0, 0))
    for direction, chunk, ts, seq in steps:
        for k in range(0, len(chunk), 700):
            d.receive(direction, chunk[k : k + 700], ts, seq + k)
            assert d.buffered <= cap
    d.close(0)


def test_heartbeats_are_ignored_and_broker_cancel_is_pushed():
    heartbeat = b"\x08\x00\x00\x00\x00\x00\x00\xce"
    cancel = method(1, 60, 30, shortstr("ctag-1") + b"\x01")  # no-wait: no cancel-ok
    calls = calls_of(dialog((C, heartbeat), (S, heartbeat + cancel + heartbeat)))
    assert [(c.method, c.flags) for c in calls] == [("basic.cancel", ("push",))]
    assert header(calls[0].request_headers, "consumer-tag") == "ctag-1"
