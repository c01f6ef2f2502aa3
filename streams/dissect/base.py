"""The contract every protocol dissector keeps (sans-IO: bytes in, events out)."""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Protocol

from schemas.records import ApiCall
from streams.reassembly.events import Direction, Flow


class DissectError(Exception):
    """Bytes that do not parse as the protocol; carried inside `DissectFailed`, never raised out."""


@dataclass(frozen=True, slots=True)
class DissectFailed:
    flow_id: str
    protocol: str
    direction: Direction
    reason: str
    ts_ns: int


DissectEvent = ApiCall | DissectFailed


_ID_PREFIXES: dict[str, Any] = {}  # flow id -> blake2b state after "flow_id|" (calls of a
# flow come by the hundred; copying the state costs less than hashing the id again)


def call_id(flow_id: str, seq: int, ts_ns: int) -> str:
    """Stable id of a call: the same captured bytes always give the same id, so a call
    replayed after a crash replaces its first copy in storage. It is the BLAKE2b-128 of
    ``f"{flow_id}|{seq}|{ts_ns}"``."""
    if type(seq) is not int or type(ts_ns) is not int:  # "%d" would not spell them as str()
        return blake2b(f"{flow_id}|{seq}|{ts_ns}".encode(), digest_size=16).hexdigest()
    prefix = _ID_PREFIXES.get(flow_id)
    if prefix is None:
        if len(_ID_PREFIXES) >= 4096:
            _ID_PREFIXES.clear()
        prefix = _ID_PREFIXES[flow_id] = blake2b(f"{flow_id}|".encode(), digest_size=16)
    h = prefix.copy()
    h.update(b"%d|%d" % (seq, ts_ns))
    return h.hexdigest()


def new_call(flow: Flow, protocol: str, seq: int, ts_ns: int, **fields: Any) -> ApiCall:
    """An `ApiCall` of `flow` whose request began at TCP sequence `seq` (or datagram
    number, for UDP) at `ts_ns`; `fields` are the protocol's (see README.md here)."""
    return ApiCall(
        call_id=call_id(flow.flow_id, seq, ts_ns),
        protocol=protocol,
        ts_ns=ts_ns,
        src_ip=flow.client_ip,
        src_port=flow.client_port,
        dst_ip=flow.server_ip,
        dst_port=flow.server_port,
        flow_id=flow.flow_id,
        node=flow.node,
        source=flow.source,
        tls=flow.source == "tls",
        **fields,
    )


def reversed_flow(flow: Flow) -> Flow:
    """`flow` with its roles the other way round: the capture guessed the client wrong."""
    return Flow(
        flow.flow_id,
        flow.server_ip,
        flow.server_port,
        flow.client_ip,
        flow.client_port,
        flow.node,
        flow.source,
    )


class Dissector(Protocol):
    """One instance per flow. Methods never raise; bad input becomes `DissectFailed`."""

    protocol: str

    def receive(
        self, direction: Direction, data: bytes, ts_ns: int, seq: int
    ) -> list[DissectEvent]:
        """Feed in-order bytes of one direction; `seq` is the TCP sequence number of data[0]."""
        ...

    def gap(self, direction: Direction, size: int, ts_ns: int) -> list[DissectEvent]:
        """`size` bytes were lost in `direction`: drop the partial message and resync."""
        ...

    def close(self, ts_ns: int) -> list[DissectEvent]:
        """The flow ended: emit what is pending (requests without response are flagged)."""
        ...

    @property
    def idle(self) -> bool:
        """True when no partial message is buffered and no request awaits its response,
        so every byte seen so far is accounted for in emitted events."""
        ...


class DissectorFactory(Protocol):
    protocol: str
    ports: frozenset[int]
    # Optional class attribute `transports: frozenset[str]` ({"tcp"} when absent).

    def probe(self, data: bytes) -> float:
        """Confidence 0..1 that `data` (first bytes of a direction) is this protocol."""
        ...

    def __call__(self, flow: Flow) -> Dissector: ...
