"""What TCP reassembly tells the dissectors: ordered byte streams per direction."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Direction(IntEnum):
    CLIENT_TO_SERVER = 0
    SERVER_TO_CLIENT = 1


@dataclass(frozen=True, slots=True)
class Flow:
    """A connection with its roles decided: SYN sender is the client, else a port guess."""

    flow_id: str
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    node: str = ""
    source: str = "pcap"


@dataclass(frozen=True, slots=True)
class StreamOpened:
    flow: Flow
    ts_ns: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """In-order bytes of one direction. `seq` is the TCP sequence number of data[0]."""

    flow: Flow
    direction: Direction
    data: bytes
    ts_ns: int
    seq: int


@dataclass(frozen=True, slots=True)
class GapSkipped:
    """Bytes that never arrived; the stream resumes after them."""

    flow: Flow
    direction: Direction
    size: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    flow: Flow
    reason: str  # fin | rst | idle | eof | evicted | reused (a new SYN on the 4-tuple)
    ts_ns: int


StreamEvent = StreamOpened | DataReceived | GapSkipped | StreamClosed
