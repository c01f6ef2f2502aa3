"""Which trace a call's spans belong to, and their ids: sans-IO.

Ids are derived from the call id (itself deterministic: flow, first byte, time), so the
same call exported twice (a replay after a crash) gives the same trace and span ids, and a
backend sees the second export as the same spans. A request that carries W3C
`traceparent` or B3 headers joins the application's own trace under the span it names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from schemas.records import Headers

_TRACE_BITS = 128
_SPAN_BITS = 64


@dataclass(frozen=True, slots=True)
class Parent:
    """A span in the application's own trace that the request was sent under."""

    trace_id: int
    span_id: int
    sampled: bool = True


@dataclass(frozen=True, slots=True)
class CallIds:
    trace_id: int
    client_span_id: int
    server_span_id: int
    parent: Parent | None  # the client span's parent (None: the client span is a root)


def _hashed(call_id: str, what: bytes, bits: int) -> int:
    digest = hashlib.blake2b(call_id.encode(), digest_size=bits // 8, person=what).digest()
    return int.from_bytes(digest, "big") or 1  # 0 is the invalid id


def call_ids(call_id: str, headers: Headers) -> CallIds:
    """The trace and span ids of a call's client and server spans."""
    parent = propagated_parent(headers)
    trace_id = parent.trace_id if parent else _hashed(call_id, b"wiretide.trace", _TRACE_BITS)
    return CallIds(
        trace_id=trace_id,
        client_span_id=_hashed(call_id, b"wiretide.client", _SPAN_BITS),
        server_span_id=_hashed(call_id, b"wiretide.server", _SPAN_BITS),
        parent=parent,
    )


def propagated_parent(headers: Headers) -> Parent | None:
    """The parent span a request's `traceparent` (W3C), `b3` or `X-B3-*` headers name;
    None without one or when it is malformed (a bad header never fails the export)."""
    by_name: dict[str, str] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), value.strip())
    if "traceparent" in by_name:
        parent = _w3c(by_name["traceparent"])
        if parent is not None:
            return parent
    if "b3" in by_name:
        parts = by_name["b3"].split("-")
        if len(parts) >= 2:
            return _b3(parts[0], parts[1], parts[2] if len(parts) > 2 else "1")
    if "x-b3-traceid" in by_name and "x-b3-spanid" in by_name:
        return _b3(by_name["x-b3-traceid"], by_name["x-b3-spanid"], by_name.get("x-b3-sampled"))
    return None


def _hex(text: str, digits: tuple[int, ...]) -> int:
    if len(text) not in digits or any(c not in "0123456789abcdefABCDEF" for c in text):
        return 0
    return int(text, 16)


def _w3c(value: str) -> Parent | None:
    parts = value.split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0].lower() == "ff":
        return None
    if parts[0] == "00" and len(parts) != 4:
        return None
    trace_id, span_id, flags = _hex(parts[1], (32,)), _hex(parts[2], (16,)), _hex(parts[3], (2,))
    if not trace_id or not span_id or len(parts[3]) != 2:
        return None
    return Parent(trace_id, span_id, bool(flags & 1))


def _b3(trace: str, span: str, sampled: str | None) -> Parent | None:
    trace_id, span_id = _hex(trace, (16, 32)), _hex(span, (16,))
    if not trace_id or not span_id:
        return None
    return Parent(trace_id, span_id, (sampled or "1") not in ("0", "false"))


def sampled(trace_id: int, ratio: float) -> bool:
    """Whether a trace is exported at `ratio`: the same answer for every span of a trace
    and in every run (the rule of the SDK's TraceIdRatioBased sampler)."""
    if ratio >= 1.0:
        return True
    bound = round(ratio * (1 << 64))
    return (trace_id & ((1 << 64) - 1)) < bound
