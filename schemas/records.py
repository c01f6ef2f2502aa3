"""Records that cross stage boundaries: what capture saw and what dissection found.

Every stage speaks these frozen dataclasses; the Avro codec in `schemas/` turns them
into topic messages and back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# TCP flag bits as on the wire.
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment (or UDP datagram) as captured, payload included."""

    ts_ns: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    node: str = ""
    source: str = "pcap"  # afpacket | tls | pcap
    transport: str = "tcp"  # tcp | udp | tls (plaintext of a TCP connection; own flow ids)


def endpoint(ip: str, port: int) -> str:
    """`ip:port`, with IPv6 addresses bracketed."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def flow_id(src_ip: str, src_port: int, dst_ip: str, dst_port: int, transport: str = "tcp") -> str:
    """Canonical flow id: both directions of a connection give the same id (and partition)."""
    a, b = (src_ip, src_port), (dst_ip, dst_port)
    if b < a:
        a, b = b, a
    return f"{transport}:{endpoint(*a)}-{endpoint(*b)}"


def segment_flow_id(seg: Segment) -> str:
    return flow_id(seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port, seg.transport)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One request and its response (or a request that never got one).

    `src` is the side that sent the request. Times are Unix epoch nanoseconds taken from
    capture timestamps. Bodies are decoded (de-chunked, decompressed) and capped; the
    `*_body_size` fields keep the size on the wire.
    """

    call_id: str
    protocol: str
    ts_ns: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    flow_id: str
    node: str = ""
    source: str = "pcap"
    tls: bool = False
    method: str = ""
    path: str = ""
    query: str = ""
    request_version: str = ""
    request_headers: Headers = ()
    request_body: bytes = b""
    request_body_size: int = 0
    request_end_ns: int = 0
    status: int = 0
    reason: str = ""
    response_version: str = ""
    response_headers: Headers = ()
    response_body: bytes = b""
    response_body_size: int = 0
    response_ts_ns: int = 0
    response_end_ns: int = 0
    # "no_response", "request_truncated", "response_truncated", "gap", "malformed", ...
    flags: tuple[str, ...] = field(default=())
    # Kubernetes identity of each side ("" when unknown), filled in by `enrich`.
    src_pod: str = ""
    src_namespace: str = ""
    src_service: str = ""
    dst_pod: str = ""
    dst_namespace: str = ""
    dst_service: str = ""
    # (rule name, "pass" or "fail: <observed> <op> <limit>") per applicable rule, in the
    # rules file's order; filled in by `validate` (streams/rules), empty without rules.
    verdicts: tuple[tuple[str, str], ...] = ()

    @property
    def elapsed_ns(self) -> int:
        """Request's first byte to response's first byte; -1 without a response."""
        return self.response_ts_ns - self.ts_ns if self.response_ts_ns else -1


@dataclass(frozen=True, slots=True)
class Violation:
    """A call that failed a validation rule (the violations topic, keyed by rule name).
    `src_name`/`dst_name` are the pod, else the service, else `ip:port`."""

    rule: str
    kind: str  # latency | json | header
    call_id: str
    ts_ns: int
    observed: str  # e.g. "412.5ms", 'content-type: "text/html"', "no response"
    op: str  # e.g. ">", "!~", "at"
    limit: str  # e.g. "300ms", "/^application/json/"
    protocol: str = ""
    method: str = ""
    path: str = ""
    src_name: str = ""
    src_namespace: str = ""
    dst_name: str = ""
    dst_namespace: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Who an IP is in the cluster: a pod (with the service that selects it) or a
    service's cluster IP."""

    ip: str
    kind: str  # pod | service
    name: str
    namespace: str
    service: str = ""
    node: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    updated_ns: int = 0


def slot_fields(cls: type) -> tuple[str, ...] | None:
    """The field names of a frozen slots dataclass that can be built slot by slot (no
    __post_init__, every field in __init__, no `_underscore` field); else None."""
    if not dataclasses.is_dataclass(cls):
        return None
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    if (
        getattr(cls, "__slots__", None) != names
        or hasattr(cls, "__post_init__")
        or not all(f.init and not f.name.startswith("_") for f in fields)
    ):
        return None
    return names


def record_maker(cls: type) -> Callable[..., Any]:
    """`cls(*values)` for a frozen slots dataclass, every field given (in field order), at a
    fraction of the cost: the dataclass's __init__ goes through object.__setattr__ once per
    field. The record is built as an instance of a plain twin class with the same slots
    (ordinary attribute stores, which the interpreter does at C speed) and then made a
    `cls`; where Python refuses that, each slot is set through its descriptor instead. The
    class itself when neither is safe."""
    names = slot_fields(cls)
    if names is None:
        return cls
    ns: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": names, "__module__": __name__})
    args = ", ".join(names)
    try:
        probe = object.__new__(twin)
        probe.__class__ = cls  # the same layout: Python allows it
        ns["_twin"] = twin
        body = [f"    _o.{name} = {name}\n" for name in names]
        src = f"def make({args}):\n    _o = _new(_twin)\n{''.join(body)}    _o.__class__ = _cls\n"
    except TypeError:
        body = []
        for k, name in enumerate(names):
            ns[f"_set{k}"] = getattr(cls, name).__set__
            body.append(f"    _set{k}(_o, {name})\n")
        src = f"def make({args}):\n    _o = _new(_cls)\n{''.join(body)}"
    exec(src + "    return _o\n", ns)  # built from the dataclass's own field names
    make = ns["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


# ------------------------------------------------------------------ fitting numbers
# The narrowest range each numeric field meets on its way to storage: its Avro type
# (int: 32 bits, long: 64 bits) and, for calls, its `calls` column (UInt16 ports, Int32
# status, UInt64 sizes, DateTime64(9)/Int64 times). Dissectors report what the wire says
# (a Kafka error code of -1, an AMQP body size of 2**63), so the encoders in serde.py
# clamp at that one edge and flag what they changed, instead of one record failing the
# batch it travels in.
INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64_MAX = (1 << 63) - 1
_TIME = _SIZE = (0, _INT64_MAX)
_PORT = (0, 0xFFFF)
CALL_RANGES: dict[str, tuple[int, int]] = {
    "ts_ns": _TIME,
    "src_port": _PORT,
    "dst_port": _PORT,
    "request_body_size": _SIZE,
    "request_end_ns": _TIME,
    "status": INT32,  # signed: Kafka and others report -1, and the column keeps it
    "response_body_size": _SIZE,
    "response_ts_ns": _TIME,
    "response_end_ns": _TIME,
}
SEGMENT_RANGES = {"ts_ns": _TIME, "src_port": INT32, "dst_port": INT32, "seq": _SIZE,
                  "ack": _SIZE, "flags": INT32}  # fmt: skip
VIOLATION_RANGES = {"ts_ns": _TIME}
ENDPOINT_RANGES = {"updated_ns": _TIME}
CLAMPED_SUFFIX = "_clamped"  # call flag `<field>_clamped`: the wire said more (or less)


def fit_call(call: ApiCall) -> ApiCall:
    """`call` itself when every number is in range (the usual case, checked cheaply); else
    a copy with each number clamped to its range and flagged `<field>_clamped`. A number
    that is not an int raises TypeError: that call cannot be encoded (dead-letter it)."""
    try:
        if _in_range(call):
            return call
    except TypeError:
        pass  # fit_numbers names the field
    fitted, clamped = fit_numbers(call, CALL_RANGES)
    if not clamped:
        return call
    return dataclasses.replace(
        fitted, flags=call.flags + tuple(name + CLAMPED_SUFFIX for name in clamped)
    )


def _in_range(call: ApiCall) -> bool:
    return (
        0 <= call.ts_ns <= _INT64_MAX
        and 0 <= call.src_port <= 0xFFFF
        and 0 <= call.dst_port <= 0xFFFF
        and 0 <= call.request_body_size <= _INT64_MAX
        and 0 <= call.request_end_ns <= _INT64_MAX
        and INT32[0] <= call.status <= INT32[1]
        and 0 <= call.response_body_size <= _INT64_MAX
        and 0 <= call.response_ts_ns <= _INT64_MAX
        and 0 <= call.response_end_ns <= _INT64_MAX
    )


def fit_numbers(record: Any, ranges: dict[str, tuple[int, int]]) -> tuple[Any, list[str]]:
    """(`record` with each field of `ranges` clamped into its range, the clamped names).
    Raises TypeError naming the field when one is not an int."""
    changes: dict[str, int] = {}
    for name, (low, high) in ranges.items():
        value = getattr(record, name)
        if not isinstance(value, int):
            raise TypeError(f"{name} is a {type(value).__name__}, not an integer")
        if not low <= value <= high:
            changes[name] = min(max(value, low), high)
    return (dataclasses.replace(record, **changes) if changes else record), list(changes)
