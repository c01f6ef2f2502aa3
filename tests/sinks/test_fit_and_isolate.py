"""Issue 11, "never stop, never leak": numbers a dissector reports that a field's Avro type
or `calls` column cannot hold are fitted at the encoding edge (kept where they fit, else
clamped and flagged), and a call that cannot be encoded or stored is set aside with its
reason while the good calls beside it are stored. Through the real path: dissector ->
Avro -> Arrow -> chDB."""

from __future__ import annotations

import struct

import pytest

from schemas.records import ApiCall, Endpoint, Violation
from schemas.serde import (
    decode_call_batch,
    decode_endpoint,
    decode_violation,
    encode_call_batch,
    encode_call_batch_isolated,
    encode_endpoint,
    encode_violation,
)
from sinks.clickhouse import CallWriter, count_calls, open_store, read_calls
from tests.sinks.test_clickhouse import make_call
from tests.streams.dissect_kit import C, S, calls_of
from tests.streams.test_amqp import dialog, frame, method, shortstr
from tests.streams.test_kafka_dissect import batch, produce_v3, produce_v3_response
from tests.streams.test_kafka_dissect import run as kafka_dialog


@pytest.fixture
def store(tmp_path):
    with open_store(f"chdb://{tmp_path / 'store'}") as opened:
        yield opened


def _through_the_pipeline(store, calls: list[ApiCall]) -> list[dict]:
    message = encode_call_batch("flow", calls)  # the worker's edge
    assert CallWriter(store).write(decode_call_batch(message)) == []  # the sink's
    return read_calls(store)


def kafka_unknown_server_error() -> ApiCall:
    steps = (C, produce_v3(1, 1, batch(1))), (S, produce_v3_response(1, error=-1))
    (call,) = calls_of(kafka_dialog(*steps))
    return call


def amqp_publish_declaring_a_body_of_2_to_the_63() -> ApiCall:
    args = b"\x00\x00" + shortstr("ex") + shortstr("key") + b"\x00"
    header = frame(2, 1, struct.pack(">HHQ", 60, 0, 1 << 63) + b"\x00\x00")
    (call,) = calls_of(dialog((C, method(1, 60, 40, args) + header + frame(3, 1, b"hello"))))
    return call


def test_a_kafka_error_code_of_minus_one_is_stored_as_it_is(store):
    call = kafka_unknown_server_error()
    assert (call.status, call.reason) == (-1, "UNKNOWN_SERVER_ERROR")
    (stored,) = _through_the_pipeline(store, [call])
    assert stored["response"]["status"] == -1
    assert stored["response"]["reason"] == "UNKNOWN_SERVER_ERROR"
    assert not any(flag.endswith("_clamped") for flag in stored["flags"])
    # the query language finds it, and the service map counts it as an error
    rows = store.client.query("SELECT count() FROM calls FINAL WHERE status = -1").result_rows
    assert rows == [(1,)]
    errors = store.client.query("SELECT sum(errors) FROM service_map").result_rows
    assert errors == [(1,)]


def test_an_amqp_body_size_past_int64_is_clamped_and_flagged(store):
    call = amqp_publish_declaring_a_body_of_2_to_the_63()
    assert call.request_body_size == 1 << 63  # what the content header declared
    (stored,) = _through_the_pipeline(store, [call])
    assert stored["request"]["body_size"] == (1 << 63) - 1
    assert "request_body_size_clamped" in stored["flags"]
    assert stored["request"]["body"]  # the body that did arrive is kept


def test_one_call_that_cannot_be_encoded_does_not_take_its_batch_down(store):
    good = [kafka_unknown_server_error(), amqp_publish_declaring_a_body_of_2_to_the_63()]
    bad = ApiCall("bad-1", "http", 1, None, 1, "10.0.0.2", 80, "f")  # type: ignore[arg-type]
    message, rejected = encode_call_batch_isolated("flow", [good[0], bad, good[1]])
    assert [r.call for r in rejected] == [bad]
    assert "bad-1" in rejected[0].reason and "\n" not in rejected[0].reason
    value, form = rejected[0].dead_letter_value()
    assert form == "repr" and b"bad-1" in value
    assert message is not None and decode_call_batch(message) == [
        decode_call_batch(encode_call_batch("flow", [c]))[0] for c in good
    ]
    assert CallWriter(store).write(decode_call_batch(message)) == []
    assert len(read_calls(store)) == 2


def test_a_batch_with_nothing_encodable_gives_no_message():
    bad = ApiCall("bad-1", "http", "soon", "a", 1, "b", 2, "f")  # type: ignore[arg-type]
    message, rejected = encode_call_batch_isolated("flow", [bad])
    assert message is None and "ts_ns" in rejected[0].reason


def test_a_batch_over_more_days_than_one_insert_may_hold_is_split_not_lost(store):
    """ClickHouse refuses an insert touching more than 100 partitions (days): an old
    capture replayed in one batch would fail forever. The writer bisects it instead."""
    day = 86_400 * 10**9
    calls = [make_call(i, ts_ns=1_600_000_000 * 10**9 + i * day) for i in range(130)]
    assert CallWriter(store).write(calls) == []
    assert count_calls(store) == 130


def test_violation_and_endpoint_times_past_int64_are_clamped():
    late = Violation("r", "latency", "c", 1 << 64, "1s", ">", "1ms")
    assert decode_violation(encode_violation(late)).ts_ns == (1 << 63) - 1
    endpoint = Endpoint("10.0.0.1", "pod", "p", "ns", updated_ns=-5)
    assert decode_endpoint(encode_endpoint(endpoint)).updated_ns == 0
