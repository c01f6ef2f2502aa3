"""The contract every protocol dissector keeps (sans-IO: bytes in, events out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streams.reassembly.events import Direction, Flow
from wiretide.records import ApiCall


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

    def probe(self, data: bytes) -> float:
        """Confidence 0..1 that `data` (first bytes of a direction) is this protocol."""
        ...

    def __call__(self, flow: Flow) -> Dissector: ...
