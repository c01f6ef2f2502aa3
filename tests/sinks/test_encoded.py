"""CallBatch messages stored as they came (sinks/clickhouse/encoded.py) against real chDB:
the rows are the ones decoded calls give, and whatever the decoded path would store
differently - or a message framed unlike our encoders - is refused (NotTaken), so the
sink decodes it instead (tests/sinks/test_sink_outages.py covers that end to end)."""

from __future__ import annotations

import pytest

from schemas.codec import avro_long
from schemas.serde import (
    call_batch_records,
    codec,
    encode_call_batch,
    encode_call_record,
)
from sinks.clickhouse import CallWriter, open_store
from sinks.clickhouse.encoded import EncodedCalls, NotTaken
from tests.sinks.test_clickhouse import make_call

ROWS = "SELECT * EXCEPT ingested_at FROM calls ORDER BY call_id"


@pytest.fixture
def store(tmp_path):
    with open_store(f"chdb://{tmp_path / 'store'}") as opened:
        yield opened


def encoded(*messages: bytes) -> EncodedCalls:
    return EncodedCalls([(m, *call_batch_records(m)) for m in messages])


def rows(store) -> list[tuple]:  # noqa: ANN001
    return store.client.query(ROWS).result_rows


def test_messages_stored_as_they_came_give_the_rows_of_decoded_calls(store):
    calls = [
        make_call(1),
        make_call(
            2,
            request_headers=(("Accept", "a"), ("X-Dup", "1"), ("x-dup", "2"), ("ACCEPT", "b")),
            response_headers=(("Set-Cookie", "a=1"), ("set-cookie", "b=2")),
            verdicts=(("Latency", "pass"), ("Status", "fail: 503 != 200")),
            flags=("truncated", "gap"),
            request_body=b"\xff\x00 binary",
        ),
        make_call(3, response_ts_ns=0, response_end_ns=0, status=0, response_headers=()),
        make_call(4, src_port=65535, dst_port=0, query="q=\u00e9\u6f22"),
    ]
    messages = [encode_call_batch("f1", calls[:2]), encode_call_batch("f2", []),
                encode_call_batch("f3", calls[2:])]  # fmt: skip
    writer = CallWriter(store)
    assert writer.write(encoded(*messages)) == []
    as_encoded = rows(store)
    store.client.command("TRUNCATE TABLE calls")
    assert writer.write(calls) == []
    assert as_encoded == rows(store) and len(as_encoded) == 4
    names = store.client.query(ROWS + " LIMIT 0").column_names
    headers = as_encoded[1][names.index("request_headers")]
    assert (
        headers == {"accept": "a, b", "x-dup": "1, 2", "host": "svc"} or headers["x-dup"] == "1, 2"
    )


@pytest.mark.parametrize(
    "odd",
    [
        {"request_headers": (("\u00c4-Name", "v"),)},  # lower-casing differs
        {"verdicts": (("R\u00e9gle", "pass"),)},
        {"ts_ns": -5},
        {"response_ts_ns": -1},
        {"request_body_size": -1},
    ],
)
def test_what_the_decoded_path_would_store_differently_is_not_taken(store, odd):
    message = codec("CallBatch").encode(
        {"flow_id": "f", "calls": [_record(make_call(1)), _record(make_call(2, **odd))]}
    )
    with pytest.raises(NotTaken):
        CallWriter(store).write(encoded(message))


def test_a_port_past_its_column_is_not_taken(store):
    message = codec("CallBatch").encode(
        {"flow_id": "f", "calls": [_record(make_call(1, src_port=70_000))]}
    )
    with pytest.raises(NotTaken):
        CallWriter(store).write(encoded(message))


def test_text_that_is_not_utf8_is_not_taken(store):
    good = encode_call_batch("f", [make_call(1, path="/AAAA")])
    bad = good.replace(b"/AAAA", b"/\xff\xfeAA")
    assert call_batch_records(bad) is not None
    with pytest.raises(NotTaken):
        CallWriter(store).write(encoded(good, bad))


def test_an_array_in_two_blocks_is_not_misread(store):
    """Blocks without sizes look like one block to call_batch_records: the insert fails
    (the Avro reader, else the sentinel after the first block's calls), so nothing of
    the message is lost silently."""
    first, second = [make_call(1), make_call(2)], [make_call(3)]
    flow = encode_call_batch("f", [])[10:-1]  # the flow id, as written
    message = (
        codec("CallBatch").header + flow
        + avro_long(2) + b"".join(map(encode_call_record, first))
        + avro_long(1) + b"".join(map(encode_call_record, second)) + b"\x00"
    )  # fmt: skip
    assert call_batch_records(message) is not None
    with pytest.raises(NotTaken):
        CallWriter(store).write(encoded(message))


def test_call_batch_records_frames_only_call_batches():
    message = encode_call_batch("flow", [make_call(1), make_call(2)])
    count, start, end = call_batch_records(message)
    assert count == 2 and message[start:end] == b"".join(
        encode_call_record(c) for c in (make_call(1), make_call(2))
    )
    empty = encode_call_batch("flow", [])
    assert call_batch_records(empty) == (0, len(empty), len(empty))
    for other in (b"", None, b"\xc3\x01" + b"\x00" * 8 + b"\x02a\x02", message[:-1] + b"\x02"):
        assert call_batch_records(other) is None


def _record(call) -> dict:  # noqa: ANN001
    from schemas.serde import _call_record

    return _call_record(call)
