"""WebSocket dissector: golden captures checked against what the real clients sent and got
(tests/golden/protocols/websocket/record.py), edge cases on hand-made frames, and junk
after a handshake keeping the buffers capped. Framing, gaps, close and fuzz over the
captures: tests/streams/test_dissector_contract.py."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import ApiCall, flow_id
from streams.dissect.base import DissectFailed
from streams.dissect.http import HTTP1
from streams.dissect.registry import default_registry
from streams.dissect.websocket import WEBSOCKET, WebSocketDissector, whole_frames
from streams.dissect.websocket.handshake import Deflate, Handshake, accept_key
from streams.dissect.websocket.parser import DEFAULT_MAX_MESSAGE
from streams.reassembly.events import Direction, Flow
from tests.golden.protocols.dissect import dissect_pcap
from tests.streams.dissect_kit import calls_of, failures_of

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "websocket"
C, S = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
FLOW = Flow(flow_id("10.0.0.1", 40000, "10.0.0.2", 80), "10.0.0.1", 40000, "10.0.0.2", 80)


def body_text(side: dict) -> object:
    """A view's body as the client library saw it: text, or {"hex": ...} for binary."""
    if side["body_encoding"] == "base64":
        return {"hex": base64.b64decode(side["body"]).hex()}
    return side["body"]


def facts(case: str) -> list[dict]:
    return json.loads((GOLDEN / f"{case}.client.json").read_text())


def views_by_path(case: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for v in dissect_pcap(GOLDEN / f"{case}.pcap"):
        req = v["request"] or {}
        out[req.get("path", "") + ("?" + req["query"] if req.get("query") else "")].append(v)
    return out


def ws_calls(views: list[dict], method: str | None = None) -> list[dict]:
    return [
        v
        for v in views
        if v["protocol"] == "websocket" and (method is None or v["request"]["method"] == method)
    ]


def data_messages(views: list[dict], push: bool) -> list[object]:
    """Client messages (push=False) or server messages (push=True), in capture order."""
    out = []
    for v in ws_calls(views):
        if v["request"]["method"] not in ("text", "binary") or ("push" in v["flags"]) != push:
            continue
        side = v["response"] if push else v["request"]
        out.append(body_text(side))
    return out


# ------------------------------------------------------------- golden facts


@pytest.mark.parametrize("case", ["basic", "deflate", "deflate_reset"])
def test_every_connection_is_handed_over_after_its_101(case):
    by_path = views_by_path(case)
    for fact in facts(case):
        views = by_path[fact["path"]]
        first = views[0]
        assert first["protocol"] == "http" and first["response"]["status"] == 101
        assert first["flags"] == ["upgrade"]
        assert ws_calls(views), fact["path"]
        assert all(v["flow_id"] == first["flow_id"] for v in views)
        assert all(v["src"] == first["src"] and v["dst"] == first["dst"] for v in views)


@pytest.mark.parametrize("case", ["basic", "deflate", "deflate_reset"])
def test_messages_are_what_the_clients_sent_and_received(case):
    by_path = views_by_path(case)
    for fact in facts(case):
        views = by_path[fact["path"]]
        sent = data_messages(views, push=False)
        big = [i for i, m in enumerate(fact["sent"]) if isinstance(m, str) and m.startswith("<")]
        for i in big:  # the recorder wrote "<70000 x>": the body is cut at the cap
            assert sent[i] == "x" * DEFAULT_MAX_MESSAGE
            sent[i] = fact["sent"][i]
        assert sent == fact["sent"], fact["client"]
        if "received" in fact:
            assert data_messages(views, push=True) == fact["received"], fact["client"]


def test_big_message_keeps_its_size_and_cuts_its_body():
    views = views_by_path("basic")["/chat?room=1"]
    (big,) = [v for v in ws_calls(views, "text") if v["request"]["body_size"] == 70_000]
    assert "request_truncated" in big["flags"]
    assert len(big["request"]["body"]) == DEFAULT_MAX_MESSAGE


def test_close_codes_and_reasons_are_the_clients():
    for case in ("basic", "deflate", "deflate_reset"):
        by_path = views_by_path(case)
        for fact in facts(case):
            (close,) = ws_calls(by_path[fact["path"]], "close")
            code, reason = fact["close"]
            assert (close["response"]["status"], close["response"]["reason"]) == (code, reason)
            assert close["request"]["headers"]["websocket-close-code"] == str(code)
            assert "no_response" not in close["flags"]  # the other side answered


def test_server_started_close_is_a_push():
    (close,) = ws_calls(views_by_path("basic")["/bye"], "close")
    assert close["flags"] == ["push"]
    assert close["response"]["reason"] == "server says bye"


def test_client_ping_and_server_ping_are_paired_with_their_pongs():
    views = views_by_path("basic")["/chat?room=1"]
    client_ping, server_ping = ws_calls(views, "ping")
    assert client_ping["flags"] == [] and client_ping["elapsed_ms"] > 0
    assert client_ping["request"]["body"] == facts("basic")[0]["pinged"]
    assert client_ping["response"]["body"] == client_ping["request"]["body"]  # the pong
    assert server_ping["flags"] == ["push"]
    assert server_ping["response"]["body"] == server_ping["request"]["body"] == "srv-ping"


def test_fragmented_messages_are_flagged_and_joined():
    views = views_by_path("basic")["/chat?room=1"]
    fragmented = [v for v in ws_calls(views, "text") if "fragmented" in v["flags"]]
    assert len(fragmented) == 2  # the client's and the server's three-fragment messages
    assert {"push" in v["flags"] for v in fragmented} == {True, False}


@pytest.mark.parametrize("case", ["deflate", "deflate_reset"])
def test_deflate_sessions_inflate_every_message(case):
    (fact,) = facts(case)
    assert fact["extensions"].startswith("permessage-deflate")
    views = views_by_path(case)["/quotes"]
    messages = [v for v in ws_calls(views) if v["request"]["method"] in ("text", "binary")]
    assert messages and all("compressed" in v["flags"] for v in messages)
    assert not any("decode_error" in v["flags"] for v in views)


def test_context_takeover_shrinks_later_messages_and_reset_does_not():
    def client_sizes(case):
        views = views_by_path(case)["/quotes"]
        texts = [v for v in ws_calls(views, "text") if "push" not in v["flags"]]
        return [v["request"]["body_size"] for v in texts][:4]

    kept, reset = client_sizes("deflate"), client_sizes("deflate_reset")
    assert kept[0] == reset[0]
    assert all(k < r for k, r in zip(kept[1:], reset[1:], strict=True))


# ----------------------------------------------------------- hand-made frames


def frame(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    mask: bytes | None = b"\x01\x02\x03\x04",
    rsv1: bool = False,
) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server(opcode: int, payload: bytes, **kw) -> bytes:
    return frame(opcode, payload, mask=None, **kw)


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def handshake(extensions: str = "", accept: str | None = None) -> tuple[bytes, bytes]:
    req = (
        f"GET /live?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    ext = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    resp = (
        f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept or accept_key(KEY)}\r\n{ext}\r\n"
    ).encode()
    return req, resp


def run(steps: list[tuple[str, bytes]], d=None, close: bool = True):
    d = d if d is not None else HTTP1(FLOW)
    seqs = [1000, 5000]
    out = []
    for t, (who, data) in enumerate(steps, start=1):
        k = 0 if who == "c" else 1
        if who.startswith("gap"):
            k = 0 if who == "gapc" else 1
            out += d.gap(Direction(k), len(data), t)
            seqs[k] += len(data)
            continue
        out += d.receive(Direction(k), data, t, seqs[k])
        seqs[k] += len(data)
    if close:
        out += d.close(10_000)
    return d, out


def ws_only(events: list) -> list[ApiCall]:
    return [c for c in calls_of(events) if c.protocol == "websocket"]


def test_bytes_in_the_101s_segment_and_held_client_bytes_are_handed_over():
    req, resp = handshake()
    d, out = run(
        [
            ("c", req + frame(1, b"early")),  # sent before the 101 arrived
            ("s", resp + server(1, b"welcome")),  # the 101 and a first frame together
        ]
    )
    assert failures_of(out) == []
    calls = calls_of(out)
    assert [(c.protocol, c.method) for c in calls] == [
        ("http", "GET"),
        ("websocket", "text"),
        ("websocket", "text"),
    ]
    early, welcome = calls[1:]
    assert (early.request_body, early.path, early.query) == (b"early", "/live", "x=1")
    assert welcome.response_body == b"welcome" and welcome.flags == ("push",)


def test_a_101_without_the_right_accept_is_not_read_as_websocket():
    req, resp = handshake(accept="bm90IHRoZSByaWdodCBrZXk=")
    d, out = run([("c", req), ("s", resp + server(1, b"x")), ("c", frame(1, b"y"))])
    assert [c.protocol for c in calls_of(out)] == ["http"]
    assert failures_of(out) == []


def test_idle_follows_the_websocket_state_after_the_hand_off():
    req, resp = handshake()
    d, _ = run([("c", req), ("s", resp)], close=False)
    assert d.idle
    d.receive(C, frame(9, b"p")[:3], 3, 2000)  # half a ping frame
    assert not d.idle
    d.receive(C, frame(9, b"p")[3:], 4, 2003)  # the whole ping: waits for its pong
    assert not d.idle
    out = d.receive(S, server(10, b"p"), 5, 9000)
    assert d.idle
    (ping,) = calls_of(out)
    assert (ping.method, ping.request_body, ping.response_body) == ("ping", b"p", b"p")
    assert ping.response_ts_ns == 5 and ping.ts_ns == 3


def test_unanswered_ping_and_close_are_flagged_at_the_end():
    req, resp = handshake()
    _, out = run([("c", req), ("s", resp), ("c", frame(9, b"a")), ("c", frame(8, b"\x03\xe8"))])
    ping, close = ws_only(out)
    assert ping.flags == ("no_response",) and close.flags == ("no_response",)
    assert (close.status, close.reason) == (1000, "")


def test_empty_close_is_1005_and_unsolicited_pong_is_its_own_call():
    req, resp = handshake()
    _, out = run(
        [
            ("c", req),
            ("s", resp),
            ("s", server(10, b"hb")),
            ("s", server(8, b"")),
            ("c", frame(8, b"")),
        ]
    )
    pong, close = ws_only(out)
    assert (pong.method, pong.flags, pong.response_body) == ("pong", ("push",), b"hb")
    assert (close.method, close.status, close.flags) == ("close", 1005, ("push",))


def test_control_frames_between_fragments():
    req, resp = handshake()
    _, out = run(
        [
            ("c", req),
            ("s", resp),
            ("c", frame(1, b"he", fin=False) + frame(9, b"mid") + frame(0, b"llo")),
            ("s", server(10, b"mid")),
        ]
    )
    text, ping = ws_only(out)
    assert (text.method, text.request_body, text.flags) == (
        "text",
        b"hello",
        ("fragmented", "no_response"),
    )
    assert ping.method == "ping" and ping.response_body == b"mid"


def test_lengths_16_and_64_bit():
    req, resp = handshake()
    medium, large = b"m" * 300, b"L" * 70_000
    _, out = run([("c", req), ("s", resp), ("c", frame(2, medium)), ("s", server(2, large))])
    a, b = ws_only(out)
    assert a.request_body == medium and a.request_body_size == 300
    assert b.response_body == large[:DEFAULT_MAX_MESSAGE] and b.response_body_size == 70_000
    assert b.flags == ("push", "response_truncated")


def deflate_messages(texts: list[bytes], takeover: bool) -> list[bytes]:
    """permessage-deflate payloads as RFC 7692 builds them (sync flush, tail removed)."""
    comp = zlib.compressobj(wbits=-15)
    out = []
    for t in texts:
        if not takeover:
            comp = zlib.compressobj(wbits=-15)
        data = comp.compress(t) + comp.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


@pytest.mark.parametrize("takeover", [True, False])
def test_deflate_with_and_without_context_takeover(takeover):
    ext = "permessage-deflate" + ("" if takeover else "; client_no_context_takeover")
    req, resp = handshake(ext)
    texts = [b'{"n": 1, "payload": "abcabcabc"}', b'{"n": 2, "payload": "abcabcabc"}']
    payloads = deflate_messages(texts, takeover)
    steps = [("c", req), ("s", resp)] + [("c", frame(1, p, rsv1=True)) for p in payloads]
    _, out = run(steps)
    assert [c.request_body for c in ws_only(out)] == texts
    assert all(c.flags == ("compressed", "no_response") for c in ws_only(out))


def test_a_deflate_message_cut_by_a_gap_is_flagged_and_the_flow_goes_on():
    req, resp = handshake("permessage-deflate")
    (p,) = deflate_messages([b"x" * 500 + b"hello" * 50], True)
    f = frame(1, p, rsv1=True)
    _, out = run([("c", req), ("s", resp), ("c", f[:8]), ("gapc", f[8:10]), ("c", f[10:])])
    (msg,) = ws_only(out)
    assert "gap" in msg.flags and "decode_error" in msg.flags


def test_gap_inside_a_payload_keeps_the_framing():
    req, resp = handshake()
    f = frame(1, b"0123456789")
    _, out = run(
        [
            ("c", req),
            ("s", resp),
            ("c", f[:8]),
            ("gapc", f[8:12]),
            ("c", f[12:] + frame(1, b"next")),
        ]
    )
    first, second = ws_only(out)
    assert "gap" in first.flags and first.request_body_size == 10
    assert second.request_body == b"next"


def test_gap_over_a_frame_boundary_stops_that_direction_only():
    req, resp = handshake()
    f = frame(1, b"abc")
    _, out = run(
        [
            ("c", req),
            ("s", resp),
            ("gapc", f + b"xx"),
            ("c", frame(1, b"lost")),
            ("s", server(1, b"still read")),
        ]
    )
    (fail,) = failures_of(out)
    assert fail.protocol == "websocket" and fail.direction == C
    assert [c.response_body for c in ws_only(out)] == [b"still read"]


@pytest.mark.parametrize(
    "bad, reason",
    [
        (bytes([0xB1, 0x80]) + b"\0\0\0\0", "RSV2"),
        (bytes([0x83, 0x80]) + b"\0\0\0\0", "reserved opcode"),
        (bytes([0x09, 0x80]) + b"\0\0\0\0", "control frame"),
        (bytes([0xC1, 0x80]) + b"\0\0\0\0", "RSV1"),
        (frame(0, b"orphan"), "continuation"),
        (frame(1, b"a", fin=False) + frame(1, b"b"), "new data message"),
    ],
)
def test_protocol_violations_are_one_failure_and_the_other_side_goes_on(bad, reason):
    req, resp = handshake()
    _, out = run(
        [("c", req), ("s", resp), ("c", bad), ("c", frame(1, b"z")), ("s", server(1, b"ok"))]
    )
    (fail,) = failures_of(out)
    assert reason in fail.reason
    assert ws_only(out)[-1].response_body == b"ok"


def test_roles_backwards_give_the_same_calls():
    req, resp = handshake()
    steps = [("c", req), ("s", resp), ("c", frame(1, b"hi")), ("s", server(1, b"yo"))]
    _, out = run(steps)
    back_flow = Flow(FLOW.flow_id, FLOW.server_ip, FLOW.server_port, FLOW.client_ip, 40000)
    d = HTTP1(back_flow)
    _, back = run([("s" if w == "c" else "c", data) for w, data in steps], d)
    assert [(c.method, c.request_body, c.response_body, c.src_port) for c in ws_only(back)] == [
        (c.method, c.request_body, c.response_body, c.src_port) for c in ws_only(out)
    ]


# --------------------------------------------------------- mid-stream pick-up


def test_mid_stream_frames_are_detected_and_read_without_a_handshake():
    client_bytes = frame(1, b"hello") + frame(9, b"p")
    assert WEBSOCKET.probe(client_bytes) >= 0.5
    assert default_registry().detect(FLOW, client_bytes) is WEBSOCKET
    d = WEBSOCKET(FLOW)
    out = d.receive(C, client_bytes, 1, 100)
    out += d.receive(S, server(10, b"p") + server(1, b"back"), 2, 900)
    out += d.close(3)
    text, ping, back = calls_of(out)
    assert (text.method, text.request_body, text.path) == ("text", b"hello", "")
    assert ping.response_body == b"p" and back.response_body == b"back"


def test_mid_stream_server_first_and_compressed_message_is_inflated():
    (p,) = deflate_messages([b"compressed hello"], takeover=False)
    d = WEBSOCKET(FLOW)
    out = d.receive(C, server(1, p, rsv1=True), 1, 100)  # the flow's "client" is the server
    out += d.close(2)
    (call,) = calls_of(out)
    assert call.response_body == b"compressed hello" and "push" in call.flags
    assert call.src_port == FLOW.server_port  # the side that masks is the client


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"\x16\x03\x01\x00\x05hello",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        frame(1, b"cut short")[:-2],
        b"\x81",
    ],
)
def test_probe_refuses_other_protocols_and_partial_frames(data):
    assert WEBSOCKET.probe(data) == 0.0
    assert whole_frames(data) == 0


# ------------------------------------------------------------- junk and caps

HYP = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)


junk = st.lists(
    st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [
                frame(1, b"ok"),
                frame(2, b"\x00" * 200),
                frame(9, b"p"),
                server(10, b"p"),
                frame(8, b"\x03\xe8bye"),
                frame(1, b"part", fin=False),
                frame(0, b"end"),
                bytes([0x81, 0xFF]) + b"\xff" * 8,
                bytes([0xC1, 0x05]) + b"abcde",
            ]
        ),
    ),
    max_size=12,
)


@HYP
@given(client=junk, srv=junk, gap=st.integers(0, 3))
def test_random_bytes_after_a_handshake_never_raise_and_buffers_stay_capped(client, srv, gap):
    d = WebSocketDissector(FLOW, Handshake("/x", "", Deflate()), max_message=1024, max_pending=4)
    bound = 2 * (14 + 1024 + 125) + 2 * 4 * 125
    out = []
    seq = [0, 0]
    for k, piece in enumerate(zip_longest(client, srv, fillvalue=b"")):
        for direction, data in ((C, piece[0]), (S, piece[1])):
            if gap and k == gap:
                out += d.gap(direction, 3, k)
            out += d.receive(direction, data, k, seq[direction])
            seq[direction] += len(data)
            assert d.buffered <= bound
    out += d.close(99)
    assert d.idle
    for e in out:
        if isinstance(e, DissectFailed):
            assert not e.reason.startswith("internal"), e.reason
        else:
            assert isinstance(e, ApiCall) and e.protocol == "websocket"


@pytest.mark.parametrize(
    "ext", ["permessage-deflate", "permessage-deflate; client_no_context_takeover"]
)
def test_a_compressed_message_over_the_cap_is_cut_and_the_next_still_inflates(ext):
    req, resp = handshake(ext)
    takeover = "no_context" not in ext
    big, small = b"abcdefgh" * 10_000, b"after the big one"
    p1, p2 = deflate_messages([big, small], takeover)
    _, out = run(
        [("c", req), ("s", resp), ("c", frame(2, p1, rsv1=True) + frame(1, p2, rsv1=True))]
    )
    first, second = ws_only(out)
    assert first.request_body == big[:DEFAULT_MAX_MESSAGE] and first.request_body_size == len(p1)
    assert "request_truncated" in first.flags
    assert second.request_body == small and "decode_error" not in second.flags
