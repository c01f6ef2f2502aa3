"""diff.compare / learn_volatile / latency over calls recorded from real servers and
replayed at their v1 and v2 (tests/replay/servers.py)."""

from __future__ import annotations

import dataclasses

from tests.conftest import http_call
from tests.replay import servers
from tests.replay.conftest import replay
from wiretide.replay.diff import (
    ANY_ENDPOINT,
    VolatileSet,
    compare,
    endpoint_of,
    latency,
    learn_volatile,
    percentiles,
)
from wiretide.replay.model import Exchange, ReplayedResponse, SentRequest


def _endpoint(x: Exchange) -> str:
    call = x.recorded
    if call.protocol == "grpc":
        return f"grpc {call.request_body.decode()}"
    return endpoint_of(call)


def test_the_same_build_matches_once_volatile_fields_are_learned(recorded, v1_ports):
    first, second, third = (replay(recorded, *v1_ports, run_id=f"r{k}") for k in range(3))
    # Without learning, timestamps and random ids make JSON answers differ from the recording.
    naive = {_endpoint(x): compare(x).outcome for x in third}
    assert naive["GET /items/1"] == "changed"
    assert naive["GET /health"] == "matched"
    volatile = learn_volatile(first, second)
    assert volatile.ignores("GET /items/1", "body:$.served_at")
    assert volatile.ignores("GET /items/1", "header:x-trace-token")
    assert volatile.ignores("GET /list", "body:$.items[2].nonce")  # any index: [*]
    assert not volatile.ignores("GET /list", "body:$.items[1].sku")
    assert not volatile.ignores("GET /items/1", "body:$.price")
    verdicts = [compare(x, volatile) for x in third]
    assert [v.differences for v in verdicts if v.outcome != "matched"] == []


def test_v2_reports_exactly_the_changed_calls(recorded, v2_ports):
    volatile = learn_volatile(replay(recorded, *v2_ports), replay(recorded, *v2_ports))
    exchanges = replay(recorded, *v2_ports)
    changed: dict[str, set[str]] = {}
    for x in exchanges:
        verdict = compare(x, volatile)
        if verdict.outcome == "changed":
            changed.setdefault(_endpoint(x), set()).update(d.where for d in verdict.differences)
        else:
            assert verdict.outcome == "matched", (x.recorded.path, verdict)
    expected = {**servers.CHANGED_IN_V2, 'grpc {"1":"b"}': {'body:$["2"]'}}
    assert changed == expected


def test_the_differences_say_what_was_and_what_is(recorded, v2_ports):
    volatile = learn_volatile(replay(recorded, *v2_ports), replay(recorded, *v2_ports))
    by = {_endpoint(x): compare(x, volatile) for x in replay(recorded, *v2_ports)}
    (price,) = by["GET /items/3"].differences
    assert (price.recorded, price.replayed) == ("30", "35")
    status = by["GET /legacy"].differences[0]
    assert (status.where, status.recorded, status.replayed) == ("status", "200", "404")
    (page,) = by["GET /page"].differences
    assert "Welcome v2" in page.replayed and "Welcome v2" not in page.recorded
    (count,) = by['grpc {"1":"b"}'].differences
    assert (count.recorded, count.replayed) == ("7", "8")
    assert by['grpc {"1":"missing"}'].outcome == "matched"  # NOT_FOUND both times


def test_latency_percentiles_recorded_and_replayed(recorded, v2_ports):
    exchanges = replay(recorded, *v2_ports)
    lat = latency(exchanges)
    assert lat.recorded.count == lat.replayed.count == len(recorded)
    slow = [x.response.latency_ns for x in exchanges if x.recorded.path == "/slow"]
    assert len(slow) == 2 and min(slow) >= servers.SLOW_V2_S * 1e9
    # 2 slow calls of 21: the top two ranks, so p95 (rank 20) and p99 are slow ones.
    assert lat.replayed.p95_ns >= servers.SLOW_V2_S * 1e9
    assert lat.replayed.p99_ns >= lat.replayed.p95_ns >= lat.replayed.p50_ns > 0
    assert lat.recorded.p99_ns >= lat.recorded.p95_ns >= lat.recorded.p50_ns > 0


# ------------------------------------------------------------------- the rules, one by one


def _exchange(recorded_body: bytes, body: bytes, **kw) -> Exchange:
    call = http_call("c1", 1, response_body=recorded_body, **kw.pop("call", {}))
    headers = kw.pop("headers", call.response_headers)
    resp = ReplayedResponse(kw.pop("status", 200), headers, body, 5)
    return Exchange("r", call, 0, SentRequest("GET", "http://x/"), resp)


def test_json_key_order_and_spacing_do_not_matter():
    x = _exchange(b'{"a": 1, "b": [1, 2]}', b'{"b":[1,2],"a":1}')
    assert compare(x).outcome == "matched"


def test_json_paths_name_each_difference():
    x = _exchange(
        b'{"a": {"b c": 1, "d": [1, 2]}, "e": true}', b'{"a": {"b c": 2, "d": [1]}, "e": 1}'
    )
    where = {d.where: (d.recorded, d.replayed) for d in compare(x).differences}
    assert where == {
        'body:$.a["b c"]': ("1", "2"),
        "body:$.a.d[1]": ("2", "(absent)"),
        "body:$.e": ("true", "1"),
    }


def test_non_json_bodies_compare_by_bytes():
    assert compare(_exchange(b"<p>x</p>", b"<p>x</p>")).outcome == "matched"
    (d,) = compare(_exchange(b"<p>x</p>", b"<p>y</p>")).differences
    assert d.where == "body"


def test_redacted_values_match_anything():
    x = _exchange(
        b'{"token": "[REDACTED]", "n": 1}',
        b'{"token": "abc", "n": 1}',
        call={"response_headers": (("Set-Cookie", "sid=[REDACTED]"),)},
        headers=(("set-cookie", "sid=42"),),
    )
    assert compare(x).outcome == "matched"


def test_redacted_parts_of_text_match_what_stands_there_now():
    x = _exchange(b'{"auth": "Bearer [REDACTED]"}', b'{"auth": "Bearer abc.def"}')
    assert compare(x).outcome == "matched"
    x = _exchange(b'{"auth": "Bearer [REDACTED]"}', b'{"auth": "Basic abc"}')
    assert compare(x).outcome == "changed"
    x = _exchange(b"card [REDACTED] ok\n", b"card 4111111111111111 ok\n")
    assert compare(x).outcome == "matched"
    x = _exchange(b"card [REDACTED] ok\n", b"card 4111111111111111 declined\n")
    assert compare(x).outcome == "changed"


def test_ignored_headers_and_header_case():
    x = _exchange(
        b"ok",
        b"ok",
        call={"response_headers": (("Date", "Mon"), ("X-Kind", "a"), ("Server", "v1"))},
        headers=(("date", "Tue"), ("x-kind", "a"), ("server", "v2"), ("content-length", "2")),
    )
    assert compare(x).outcome == "matched"
    x = _exchange(b"ok", b"ok", headers=(("x-new", "1"),), call={"response_headers": ()})
    (d,) = compare(x).differences
    assert (d.where, d.recorded, d.replayed) == ("header:x-new", "(absent)", "1")


def test_a_truncated_recording_compares_as_a_prefix():
    call = {"flags": ("response_truncated",)}
    assert compare(_exchange(b'{"a": [1,', b'{"a": [1, 2]}', call=call)).outcome == "matched"
    assert compare(_exchange(b'{"a": [3,', b'{"a": [1, 2]}', call=call)).outcome == "changed"


def test_no_answer_is_failed_with_the_reason():
    x = _exchange(b"", b"")
    x = dataclasses.replace(x, response=None, error="connection refused")
    verdict = compare(x)
    assert verdict.outcome == "failed" and verdict.differences[0].replayed == "connection refused"


def test_volatile_everywhere_and_per_endpoint():
    x = _exchange(b'{"t": 1}', b'{"t": 2}')
    assert compare(x, VolatileSet(frozenset({(ANY_ENDPOINT, "body:$.t")}))).outcome == "matched"
    assert compare(x, VolatileSet(frozenset({("GET /", "body:$.t")}))).outcome == "matched"
    elsewhere = frozenset({("GET /other", "body:$.t")})
    # learned at another endpoint: borrowed when "GET /" was not sampled, not when it was
    assert compare(x, VolatileSet(elsewhere)).outcome == "matched"
    assert compare(x, VolatileSet(elsewhere, frozenset({"GET /"}))).outcome == "changed"


def test_percentiles_are_nearest_rank():
    p = percentiles(list(range(1, 101)))
    assert (p.count, p.p50_ns, p.p95_ns, p.p99_ns) == (100, 50, 95, 99)
    assert percentiles([]).count == 0
    assert percentiles([7]).p99_ns == 7


def test_an_endpoint_left_out_of_the_sample_borrows_what_others_taught(recorded, v1_ports):
    sample = [c for c in recorded if c.path != "/items/2"]
    volatile = learn_volatile(replay(sample, *v1_ports), replay(sample, *v1_ports))
    assert "GET /items/2" not in volatile.sampled
    later = [x for x in replay(recorded, *v1_ports) if x.recorded.path == "/items/2"]
    assert [compare(x, volatile).outcome for x in later] == ["matched", "matched"]
    # A sampled endpoint keeps to what it was seen to do: /health learned nothing.
    assert not volatile.ignores("GET /health", "body:$.served_at")
