"""Records <-> Avro messages: the only place that knows both the dataclasses and schemas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from schemas.codec import codec
from wiretide.records import ApiCall, Segment

_SEGMENT_FIELDS = Segment.__slots__
_CALL_SIMPLE = [f for f in ApiCall.__slots__ if f not in ("request_headers", "response_headers", "flags")]


def encode_segment_batch(flow: str, segments: Iterable[Segment]) -> bytes:
    records = [{f: getattr(s, f) for f in _SEGMENT_FIELDS} for s in segments]
    return codec("SegmentBatch").encode({"flow_id": flow, "segments": records})


def decode_segment_batch(data: bytes) -> list[Segment]:
    record = codec("SegmentBatch").decode(data)
    return [Segment(**r) for r in record["segments"]]


def _call_record(call: ApiCall) -> dict[str, Any]:
    rec = {f: getattr(call, f) for f in _CALL_SIMPLE}
    rec["request_headers"] = [{"name": n, "value": v} for n, v in call.request_headers]
    rec["response_headers"] = [{"name": n, "value": v} for n, v in call.response_headers]
    rec["flags"] = list(call.flags)
    return rec


def encode_call(call: ApiCall) -> bytes:
    return codec("ApiCall").encode(_call_record(call))


def _call(rec: dict[str, Any]) -> ApiCall:
    rec["request_headers"] = tuple((h["name"], h["value"]) for h in rec["request_headers"])
    rec["response_headers"] = tuple((h["name"], h["value"]) for h in rec["response_headers"])
    rec["flags"] = tuple(rec["flags"])
    return ApiCall(**rec)


def decode_call(data: bytes) -> ApiCall:
    return _call(codec("ApiCall").decode(data))


def encode_call_batch(flow: str, calls: Iterable[ApiCall]) -> bytes:
    return codec("CallBatch").encode({"flow_id": flow, "calls": [_call_record(c) for c in calls]})


def decode_call_batch(data: bytes) -> list[ApiCall]:
    return [_call(rec) for rec in codec("CallBatch").decode(data)["calls"]]
