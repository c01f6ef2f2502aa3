"""Kafka dissector: the golden capture (a real Kafka 3.9 broker and librdkafka clients, see
tests/golden/protocols/kafka/record.py) checked against what the clients saw, edge cases
on hand-made messages, and Hypothesis properties (any cut, junk, caps)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from hypothesis import given, settings

from schemas.records import ApiCall
from streams.dissect.base import DissectFailed
from streams.dissect.http import HTTP1
from streams.dissect.kafka import KAFKA, KafkaFactory
from streams.dissect.registry import default_registry
from streams.reassembly.events import Direction, Flow
from streams.redact import RedactionPolicy
from tests.golden.protocols.dissect import capture_calls
from tests.streams.dissect_kit import (
    JUNK_STEPS,
    C,
    S,
    assert_capped,
    call_header,
    flows_in,
    replay,
)
from tests.streams.dissect_kit import (
    calls_by_time as calls_of,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "kafka"
FLOW = Flow("tcp:10.0.0.1:40000-10.0.0.2:9092", "10.0.0.1", 40000, "10.0.0.2", 9092)


def header(call: ApiCall, name: str, response: bool = False) -> str | None:
    return call_header(call, name, response)


def body(call: ApiCall, response: bool = False) -> dict:
    raw = call.response_body if response else call.request_body
    return json.loads(raw) if raw else {}


# ---------------------------------------------------------------- the capture

FLOWS = flows_in(GOLDEN / "basic.pcap")
FACTS = json.loads((GOLDEN / "basic.facts.json").read_text())
TOPIC = FACTS["topic"]


def golden_calls() -> list[ApiCall]:
    out = []
    for flow, chunks in FLOWS:
        out += calls_of(replay(KAFKA, flow, chunks))
    return sorted(out, key=lambda c: c.ts_ns)


CALLS = golden_calls()


def by_method(method: str) -> list[ApiCall]:
    return [c for c in CALLS if c.method == method]


def test_every_flow_is_detected_as_kafka_and_nothing_fails():
    registry = default_registry()
    for flow, chunks in FLOWS:
        assert registry.detect(flow, chunks[0][1]) is KAFKA
        events = replay(KAFKA, flow, chunks)
        assert not [e for e in events if isinstance(e, DissectFailed)]
    assert {c.protocol for c in CALLS} == {"kafka"}
    # Only the consumer's last Metadata request went unanswered: it closed the connection.
    unanswered = [c for c in CALLS if "no_response" in c.flags]
    assert [(c.method, c.path) for c in unanswered] == [("Metadata", TOPIC)]
    assert all(c.flags == () for c in CALLS if c not in unanswered)


def test_created_topic_matches_the_admin_request():
    (call,) = by_method("CreateTopics")
    assert call.path == TOPIC
    assert body(call)["topics"][TOPIC]["num_partitions"] == FACTS["created"]["partitions"]
    assert (call.status, call.reason) == (0, "NONE")


def test_produce_calls_match_the_delivery_reports():
    produces = by_method("Produce")
    assert [c.path for c in produces] == [TOPIC] * len(FACTS["produced"])
    assert sum(int(header(c, "record_count")) for c in produces) == len(FACTS["produced"])
    assert {header(c, "acks") for c in produces} == {"-1"}  # idempotence implies acks=all
    acked = []
    for call in produces:
        for partition, result in body(call, response=True)["topics"][TOPIC].items():
            assert result["error"] == 0
            acked.append({"partition": int(partition), "offset": result["base_offset"]})
    assert acked == [
        {"partition": p["partition"], "offset": p["offset"]} for p in FACTS["produced"]
    ]


def test_fetched_record_counts_match_what_the_consumer_got():
    fetches = by_method("Fetch")
    assert fetches and {c.path for c in fetches} == {TOPIC}  # topic ids resolved
    assert sum(int(header(c, "record_count", response=True)) for c in fetches) == len(
        FACTS["consumed"]
    )
    got: dict[str, int] = {}
    for call in fetches:
        for partition, result in body(call, response=True)["topics"][TOPIC].items():
            got[partition] = got.get(partition, 0) + result["records"]
    want: dict[str, int] = {}
    for message in FACTS["consumed"]:
        want[str(message["partition"])] = want.get(str(message["partition"]), 0) + 1
    assert {p: n for p, n in got.items() if n} == want


def test_group_calls_carry_the_group_and_the_commit_matches():
    for method in ("JoinGroup", "SyncGroup", "Heartbeat", "OffsetCommit", "LeaveGroup"):
        calls = by_method(method)
        assert calls, method
        assert {header(c, "group_id") for c in calls} == {FACTS["group"]}, method
    (commit,) = by_method("OffsetCommit")
    committed = {str(c["partition"]): c["offset"] for c in FACTS["committed"] if c["offset"] >= 0}
    offsets = {p: v["offset"] for p, v in body(commit)["topics"][TOPIC].items()}
    assert offsets == committed
    assert commit.status == 0
    joined = [c for c in by_method("JoinGroup") if c.status == 0]
    assert joined and all(c.path == TOPIC for c in joined)  # from the subscription
    (sync,) = by_method("SyncGroup")
    assert set(body(sync, response=True)["topics"][TOPIC]) == {"0", "1"}  # the assignment


def test_missing_topic_metadata_is_an_error_call():
    calls = [c for c in by_method("Metadata") if c.path == FACTS["missing_topic"]]
    assert calls
    assert FACTS["missing_error"].startswith("UNKNOWN_TOPIC_OR_PART")
    for call in calls:
        assert (call.status, call.reason) == (3, "UNKNOWN_TOPIC_OR_PARTITION")
        assert body(call, response=True)["topics"][FACTS["missing_topic"]]["error"] == 3


def test_client_ids_as_the_clients_set_them():
    calls = capture_calls(GOLDEN / "basic.pcap", RedactionPolicy(fields=()))
    ids = {header(c, "client_id") for c in calls}
    assert ids == {"golden-admin", "golden-producer", "golden-consumer"}
    for call in calls:
        assert header(call, "api_version") == call.request_version
    software = {header(c, "client_software_name") for c in calls if c.method == "ApiVersions"}
    assert software == {"confluent-kafka-python"}


def test_default_redaction_hides_only_the_names_it_lists():
    policy = RedactionPolicy.default()
    names = {n for c in CALLS for n, _ in (*c.request_headers, *c.response_headers)}
    # "api_key" holds "key" and "client_id" is "clientid": the default list hides both.
    assert {n for n in names if policy.matches(n)} == {"api_key", "client_id"}


# ------------------------------------------------------------ hand-made messages


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def kstr(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    return struct.pack(">h", len(s)) + s.encode()


def request(api_key: int, version: int, corr: int, payload: bytes, flexible=False) -> bytes:
    head = struct.pack(">hhi", api_key, version, corr) + kstr("test-client")
    return frame(head + (b"\x00" if flexible else b"") + payload)


def response(corr: int, payload: bytes, flexible=False) -> bytes:
    return frame(struct.pack(">i", corr) + (b"\x00" if flexible else b"") + payload)


def batch(count: int, payload: int = 10, control: bool = False) -> bytes:
    head = struct.pack(
        ">qiibIhiqqqhii", 0, 49 + payload, 0, 2, 0, 0x20 if control else 0, count - 1,
        0, 0, -1, -1, -1, count,
    )  # fmt: skip
    return head + b"x" * payload


def produce_v3(corr: int, acks: int, records: bytes, topic: str = "t") -> bytes:
    payload = kstr(None) + struct.pack(">hi", acks, 1000) + struct.pack(">i", 1) + kstr(topic)
    payload += struct.pack(">ii", 1, 0) + struct.pack(">i", len(records)) + records
    return request(0, 3, corr, payload)


def produce_v3_response(corr: int, error: int = 0, offset: int = 7, topic: str = "t") -> bytes:
    payload = struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1)
    payload += struct.pack(">ihqq", 0, error, offset, -1) + struct.pack(">i", 0)
    return response(corr, payload)


def heartbeat_v3(corr: int) -> bytes:
    return request(12, 3, corr, kstr("g") + struct.pack(">i", 1) + kstr("m") + kstr(None))


def heartbeat_v3_response(corr: int, error: int = 0) -> bytes:
    return response(corr, struct.pack(">ih", 0, error))


def run(*steps: tuple[Direction, bytes], make=KAFKA, dissector=None) -> list:
    d = dissector or make(FLOW)
    seqs = {C: 1000, S: 5000}
    events = []
    for k, (direction, data) in enumerate(steps):
        events += d.receive(direction, data, 10 + k, seqs[direction])
        seqs[direction] += len(data)
    return events + d.close(100)


def test_produce_counts_records_from_batch_headers_and_reports_errors():
    records = batch(3) + batch(1, control=True) + batch(2)
    events = run((C, produce_v3(1, 1, records)), (S, produce_v3_response(1, error=6)))
    (call,) = calls_of(events)
    assert (call.method, call.path) == ("Produce", "t")
    assert header(call, "record_count") == "5"  # the control batch is not data
    assert (call.status, call.reason) == (6, "NOT_LEADER_OR_FOLLOWER")
    assert body(call, response=True) == {"topics": {"t": {"0": {"error": 6, "base_offset": 7}}}}
    assert header(call, "throttle_time_ms", response=True) == "0"


def test_acks_zero_produce_is_a_call_at_once_without_response():
    d = KAFKA(FLOW)
    events = d.receive(C, produce_v3(1, 0, batch(2)), 10, 0)
    (call,) = calls_of(events)
    assert call.flags == ("no_response",) and header(call, "acks") == "0"
    assert d.idle


def test_pairing_by_correlation_id_and_unanswered_requests():
    events = run(
        (C, heartbeat_v3(1) + heartbeat_v3(2) + heartbeat_v3(3)),
        (S, heartbeat_v3_response(2, error=27)),  # 1 was skipped: it never gets an answer
        (S, heartbeat_v3_response(3)),
        (S, heartbeat_v3_response(9)),  # its request was never seen
    )
    calls = calls_of(events)
    got = [(header(c, "correlation_id"), c.status, c.flags) for c in calls]
    assert ("1", 0, ("no_response",)) in got
    assert ("2", 27, ()) in got and ("3", 0, ()) in got
    (orphan,) = [c for c in calls if "no_request" in c.flags]
    assert header(orphan, "correlation_id", response=True) == "9"
    (second,) = [c for c in calls if header(c, "correlation_id") == "2"]
    assert second.reason == "REBALANCE_IN_PROGRESS"


def test_requests_waiting_beyond_the_cap_are_given_up_oldest_first():
    d = KafkaFactory(max_pending=2)(FLOW)
    events = d.receive(C, heartbeat_v3(1) + heartbeat_v3(2), 10, 0)
    assert events == [] and not d.idle
    (given_up,) = calls_of(d.receive(C, heartbeat_v3(3), 11, 200))
    assert header(given_up, "correlation_id") == "1" and given_up.flags == ("no_response",)
    answered = calls_of(d.receive(S, heartbeat_v3_response(2) + heartbeat_v3_response(3), 12, 0))
    assert [(header(c, "correlation_id"), c.flags) for c in answered] == [("2", ()), ("3", ())]
    assert d.idle


def test_other_apis_are_calls_with_their_name_only():
    events = run(
        (C, request(71, 0, 5, b"\x00", flexible=True)),  # GetTelemetrySubscriptions
        (S, response(5, b"\x00\x00\x00\x00" * 8, flexible=True)),
    )
    (call,) = calls_of(events)
    assert call.method == "GetTelemetrySubscriptions"
    assert call.request_body == b"" and call.response_body == b"" and call.flags == ()
    assert header(call, "api_key") == "71" and header(call, "client_id") == "test-client"


def test_fetch_with_a_topic_id_never_named_shows_the_id():
    topic_id = bytes(range(1, 17))
    payload = struct.pack(">iiiibii", 500, 1, 1000, 0, 0, 0, -1)
    payload += b"\x02" + topic_id + b"\x02" + struct.pack(">iiqiqi", 0, -1, 42, -1, -1, 1000)
    payload += b"\x00\x00" + b"\x01" + b"\x01" + b"\x00"  # tags, forgotten, rack, tags
    events = run((C, request(1, 13, 3, payload, flexible=True)))
    (call,) = calls_of(events)
    assert call.path == "AQIDBAUGBwgJCgsMDQ4PEA"
    assert body(call)["topics"]["AQIDBAUGBwgJCgsMDQ4PEA"] == {"0": {"offset": 42}}


def test_huge_message_is_cut_but_its_size_and_the_flow_survive():
    make = KafkaFactory(max_frame=4096)
    d = make(FLOW)
    big = produce_v3(1, 1, batch(5, payload=3000) + batch(7, payload=3000))
    events = []
    for k in range(0, len(big), 500):
        events += d.receive(C, big[k : k + 500], 10, 1000 + k)
        assert d.buffered <= 4096 + 64
    events += d.receive(S, produce_v3_response(1), 11, 0)
    events += d.receive(C, heartbeat_v3(2), 12, 1000 + len(big))
    events += d.receive(S, heartbeat_v3_response(2), 13, 100)
    produce, beat = calls_of(events)
    assert produce.flags == ("request_truncated",)
    assert produce.request_body_size == len(big) - 4
    assert header(produce, "record_count") == "5"  # the cut-off second batch is not counted
    assert beat.method == "Heartbeat" and beat.flags == ()


def test_lost_bytes_inside_a_message_keep_the_framing():
    d = KAFKA(FLOW)
    req = produce_v3(1, 1, batch(2, payload=200))
    events = d.receive(C, req[:100], 10, 0)
    events += d.gap(C, 150, 11)
    events += d.receive(C, req[250:], 12, 250)
    events += d.receive(S, produce_v3_response(1), 13, 0)
    events += d.receive(C, heartbeat_v3(2), 14, len(req))
    events += d.receive(S, heartbeat_v3_response(2), 15, 100)
    produce, beat = calls_of(events)
    assert "gap" in produce.flags and produce.status == 0 and produce.path == "t"
    assert beat.flags == () and d.idle


def test_junk_then_resync_on_the_next_request():
    junk = b"\xff\xfe\x00\x13" * 30
    events = run((C, junk + heartbeat_v3(4)), (S, heartbeat_v3_response(4)))
    assert any(isinstance(e, DissectFailed) for e in events)
    (call,) = calls_of(events)
    assert (call.method, header(call, "correlation_id")) == ("Heartbeat", "4")


def test_probe():
    for _flow, chunks in FLOWS:
        assert KAFKA.probe(chunks[0][1]) >= 0.9
    assert KAFKA.probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0.0
    pg_startup = struct.pack(">ii", 40, 196608) + b"user\x00alice\x00database\x00db\x00\x00"
    assert KAFKA.probe(pg_startup) == 0.0
    assert KAFKA.probe(b"*1\r\n$4\r\nPING\r\n") == 0.0
    assert KAFKA.probe(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") == 0.0
    assert HTTP1.probe(heartbeat_v3(1)) == 0.0


# ------------------------------------------------------------------ properties
# Framing, gaps, close and fuzz over the golden capture: tests/streams/test_dissector_contract.py


@settings(max_examples=300, deadline=None)
@given(junk=JUNK_STEPS)
def test_junk_keeps_the_buffers_under_the_cap(junk):
    d = KafkaFactory(max_frame=256)(FLOW)
    assert_capped(d, [(C, heartbeat_v3(1)), *junk], 256 + 4 + 64)
