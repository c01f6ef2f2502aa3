"""Redis dissector: the golden capture (redis-server driven by redis-cli, redis-py and a
raw socket) against what the clients sent and got, RESP3 and edge cases. Framing, gaps,
close and fuzz over the capture: tests/streams/test_dissector_contract.py."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.records import ApiCall, flow_id
from streams.dissect.base import DissectFailed
from streams.dissect.redis import REDIS, RedisDissector
from streams.dissect.redis.parser import MAX_LINE
from streams.dissect.registry import default_registry
from streams.reassembly.events import Direction, Flow
from tests.golden.protocols.dissect import dissect_pcap
from tests.streams.dissect_kit import calls_of

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "redis"
PORT = 21179
C, S = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def flow(port: int = 6379) -> Flow:
    return Flow(flow_id("10.0.0.1", 40000, "10.0.0.2", port), "10.0.0.1", 40000, "10.0.0.2",
                port)  # fmt: skip


def resp(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def exchange(requests: bytes, replies: bytes, **kw) -> list:
    d = RedisDissector(flow(), **kw)
    return d.receive(C, requests, 1, 0) + d.receive(S, replies, 2, 0) + d.close(3)


def body(call: ApiCall):
    return json.loads(call.response_body)


# ------------------------------------------------------------------ golden vs clients

FACTS = json.loads((GOLDEN / "basic.client.json").read_text())
CALLS = [c for c in dissect_pcap(GOLDEN / "basic.pcap") if c["protocol"] == "redis"]


def _take(method: str, args: list, used: set[int]) -> dict:
    for k, c in enumerate(CALLS):
        if k not in used and c["request"]["method"] == method:
            if json.loads(c["request"]["body"]) == args:
                used.add(k)
                return c
    raise AssertionError(f"no call {method} {args}")


def _agrees(reply, got) -> bool:
    """redis-py's return value against the reply the dissector saw."""
    if reply is True:
        return got == "OK"
    if isinstance(reply, dict) and isinstance(got, list):  # RESP2 HGETALL: flat pairs
        return dict(zip(got[::2], got[1::2], strict=True)) == reply
    if isinstance(reply, list) and isinstance(got, list):
        return sorted(map(str, reply)) == sorted(map(str, got)) if len(reply) == len(got) else False
    return got == reply


def test_golden_commands_and_replies_match_what_the_clients_saw():
    used: set[int] = set()
    checked = 0
    for fact in FACTS:
        cmd = fact.get("command")
        if fact["client"] == "redis-cli":
            call = _take(cmd[0], cmd[1:], used)
            got = json.loads(call["response"]["body"])
            shown = got["error"] if isinstance(got, dict) else "" if got is None else str(got)
            assert shown == fact["output"]
            assert call["response"]["status"] == (1 if isinstance(got, dict) else 0)
            assert call["request"]["path"] == cmd[1]
            checked += 1
        elif fact.get("conn") in ("py", "py-pipe", "resp3") and cmd[:2] != ["SET", "blob"]:
            call = _take(cmd[0], cmd[1:], used)
            assert _agrees(fact["reply"], json.loads(call["response"]["body"])), (fact, call)
            want_version = "RESP3" if fact["conn"] == "resp3" else "RESP2"
            assert call["response"]["version"] == want_version
            checked += 1
    # redis-cli: 7 commands + 2 PUBLISH; redis-py: 6 (SET blob is checked below),
    # the pipeline's 6, the RESP3 session's 3.
    assert checked == 9 + 6 + 6 + 3


def test_golden_big_value_is_capped_with_its_size_kept():
    [call] = [
        c for c in CALLS if c["request"]["method"] == "SET" and c["request"]["path"] == "blob"
    ]
    key, value = json.loads(call["request"]["body"])
    assert key == "blob" and value["truncated"] == 70_000
    # 64 KiB kept per message, counting every bulk string ("SET", "blob") in it.
    assert value["text"] == "z" * (64 * 1024 - len("SET") - len("blob"))
    assert call["flags"] == ["request_truncated"]
    assert call["request"]["body_size"] > 70_000  # the whole command on the wire
    [strlen] = [c for c in CALLS if c["request"]["method"] == "STRLEN"]
    assert json.loads(strlen["response"]["body"]) == 70_000


def test_golden_transaction_gets_queued_replies_and_exec_results():
    tx = next(f for f in FACTS if f.get("conn") == "py-tx")
    [exec_call] = [c for c in CALLS if c["request"]["method"] == "EXEC"]
    assert json.loads(exec_call["response"]["body"]) == tx["reply"] == [1, 11, "11"]
    queued = [c for c in CALLS if c["flow_id"] == exec_call["flow_id"]
              and json.loads(c["response"]["body"]) == "QUEUED"]  # fmt: skip
    assert sorted(c["request"]["method"] for c in queued) == ["GET", "INCRBY", "INCRBY"]


def test_golden_pubsub_pushes_are_calls_of_their_own():
    sub = next(f for f in FACTS if f.get("conn") == "sub")
    pushes = [c for c in CALLS if "push" in c["flags"]]
    assert [(c["request"]["method"], c["request"]["path"], json.loads(c["response"]["body"]),
             c["response"]["headers"].get("pattern")) for c in pushes] == [
        (m["type"], m["channel"], m["data"], m["pattern"]) for m in sub["messages"]
    ]  # fmt: skip
    assert all(c["request"]["body"] == "" and c["response"]["status"] == 0 for c in pushes)
    [subscribe] = [c for c in CALLS if c["request"]["method"] == "SUBSCRIBE"]
    assert [r[0] for r in json.loads(subscribe["response"]["body"])] == sub["subscribed"][:2]
    [unsub] = [c for c in CALLS if c["request"]["method"] == "UNSUBSCRIBE"]
    assert sorted(r[1] for r in json.loads(unsub["response"]["body"])) == ["alerts", "news"]
    assert not [c for c in CALLS if c["flags"] and c["flags"] != ["push"]
                and c["flags"] != ["request_truncated"]]  # fmt: skip


def test_golden_hello3_switches_the_connection_to_resp3_and_inline_commands_parse():
    [hello] = [c for c in CALLS if c["request"]["method"] == "HELLO"
               and json.loads(c["response"]["body"])["proto"] == 3
               and c["flow_id"] == next(x for x in CALLS if x["request"]["method"] == "ZSCORE")[
                   "flow_id"]]  # fmt: skip
    assert hello["response"]["version"] == "RESP3"
    inline = next(f for f in FACTS if f.get("conn") == "inline")
    calls = [c for c in CALLS if c["request"]["headers"].get("inline") == "true"]
    assert [c["request"]["method"] for c in calls] == ["PING", "ECHO"]
    assert json.loads(calls[1]["request"]["body"]) == ["two words"]
    assert [json.loads(c["response"]["body"]) for c in calls] == ["PONG", "two words"]
    assert inline["raw_replies"] == ["+PONG\r\n", "$9\r\ntwo words\r\n"]


def test_registry_detects_redis_without_stealing_http():
    reg = default_registry()
    assert reg.detect(flow(6379), resp("PING")) is REDIS
    assert reg.detect(flow(21179), resp("SET", "k", "v")) is REDIS  # no hint: the probe
    assert reg.detect(flow(21179), resp("FOO.BAR", "k")) is REDIS  # any command array
    assert reg.detect(flow(6379), b"PING\r\n") is REDIS
    assert reg.detect(flow(8080), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is not REDIS
    assert REDIS.probe(b"+OK POP3 server ready\r\n") == 0.0


# ---------------------------------------------------------------------- edge cases


def test_resp3_types_render_as_json():
    reply = (
        b"|1\r\n+ttl\r\n:3\r\n"  # an attribute: read and dropped
        b"%5\r\n+s\r\n~2\r\n#t\r\n#f\r\n"
        b":7\r\n,inf\r\n"
        b"$3\r\nbin\r\n$3\r\n\xff\x00\x01\r\n"
        b"=8\r\ntxt:text\r\n(12345678901234567890\r\n"
        b"+n\r\n_\r\n"
    )
    [call] = calls_of(exchange(resp("X"), reply))
    assert body(call) == {"s": [True, False], "7": "inf", "bin": {"base64": "/wAB"},
                          "text": 12345678901234567890, "n": None}  # fmt: skip
    assert call.response_version == "RESP3"


def test_commands_pipelined_behind_hello_3_are_read_in_the_version_its_reply_chose():
    hello_ok = b"%1\r\n+proto\r\n:3\r\n"
    pipelined = resp("HELLO", "3") + resp("GET", "k") + resp("GET", "gone")
    [hello, get, gone] = calls_of(exchange(pipelined, hello_ok + b"_\r\n"))
    assert (hello.request_version, get.request_version) == ("RESP3", "RESP3")
    assert gone.request_version == "RESP3" and gone.flags == ("no_response",)
    [refused, after] = calls_of(exchange(resp("HELLO", "3") + resp("PING"),
                                         b"-NOPROTO sorry\r\n+PONG\r\n"))  # fmt: skip
    assert (refused.request_version, after.request_version) == ("RESP2", "RESP2")


def test_errors_set_status_and_reason():
    [call] = calls_of(exchange(resp("GET", "k"), b"!21\r\nSYNTAX invalid syntax\r\n"))
    assert (call.status, call.reason) == (1, "SYNTAX invalid syntax")
    assert body(call) == {"error": "SYNTAX invalid syntax"}


def test_big_reply_streams_through_with_a_small_buffer():
    d = RedisDissector(flow(), max_body=1000)
    d.receive(C, resp("GET", "big"), 1, 0)
    payload = b"$1000000\r\n" + b"a" * 1_000_000 + b"\r\n"
    out = []
    for k in range(0, len(payload), 1448):
        out += d.receive(S, payload[k : k + 1448], 2, k)
        assert d.buffered <= 1000 + 1448
    [call] = calls_of(out)
    assert body(call) == {"truncated": 1_000_000, "text": "a" * 1000}
    assert call.response_body_size == len(payload)
    assert call.flags == ("response_truncated",)
    assert d.idle


def test_unanswered_commands_are_capped_and_flagged():
    d = RedisDissector(flow(), max_pending=3)
    out = d.receive(C, b"".join(resp("INCR", f"k{i}") for i in range(5)), 1, 0)
    assert [c.path for c in calls_of(out)] == ["k0", "k1"]
    assert all(c.flags == ("no_response",) for c in calls_of(out))
    assert not d.idle
    assert [c.path for c in d.close(2)] == ["k2", "k3", "k4"]


def test_reply_without_command_is_flagged_no_request():
    [call] = calls_of(RedisDissector(flow()).receive(S, b"+OK\r\n", 1, 0))
    assert call.flags == ("no_request",) and body(call) == "OK"


def test_auth_passwords_never_leave_the_dissector():
    [a, h] = calls_of(exchange(resp("AUTH", "admin", "s3cret") + resp("HELLO", "3", "AUTH",
                                                                        "u", "pw"),
                               b"+OK\r\n%1\r\n+proto\r\n:3\r\n"))  # fmt: skip
    assert json.loads(a.request_body) == ["[REDACTED]", "[REDACTED]"]
    assert json.loads(h.request_body) == ["3", "AUTH", "[REDACTED]", "[REDACTED]"]
    assert b"s3cret" not in a.request_body and b"pw" not in h.request_body


def test_first_key_per_command():
    reqs = [resp("EVAL", "return 1", "1", "lock"), resp("OBJECT", "ENCODING", "k"),
            resp("XREAD", "COUNT", "1", "STREAMS", "s1", "0"), resp("PING"),
            resp("ZUNION", "2", "a", "b")]  # fmt: skip
    calls = calls_of(exchange(b"".join(reqs), b"+x\r\n" * 5))
    assert [c.path for c in calls] == ["lock", "k", "s1", "", "a"]


def test_gap_ends_parsing_and_flags_waiting_commands():
    d = RedisDissector(flow())
    d.receive(C, resp("GET", "a"), 1, 0)
    [call] = d.gap(S, 100, 2)
    assert call.flags == ("no_response", "gap")
    assert d.idle and d.receive(C, resp("GET", "b"), 3, 20) == []


def test_nesting_too_deep_fails_cleanly():
    d = RedisDissector(flow())
    d.receive(C, resp("X"), 1, 0)
    events = d.receive(S, b"*1\r\n" * 100 + b":1\r\n", 2, 0)
    assert isinstance(events[0], DissectFailed) and "deeper" in events[0].reason
    assert calls_of(events)[0].flags == ("no_response",)


def test_line_without_end_is_capped():
    d = RedisDissector(flow())
    [failed] = d.receive(C, b"*1\r\n$" + b"9" * (MAX_LINE + 10), 1, 0)
    assert isinstance(failed, DissectFailed)
    assert d.buffered == 0


def test_huge_arrays_keep_a_prefix_and_count_the_rest():
    items = b"".join(b":%d\r\n" % i for i in range(10_000))
    [call] = calls_of(exchange(resp("LRANGE", "l", "0", "-1"), b"*10000\r\n" + items))
    got = body(call)
    assert got[:3] == [0, 1, 2] and got[-1] == {"omitted": 10_000 - 4096}
    assert "response_truncated" in call.flags
