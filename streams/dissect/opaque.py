"""Flows no dissector claims still count: one `tcp` (or `udp`) record per flow with its
endpoints, bytes each way and duration, so the service map shows every edge.

The record is emitted when the flow closes. It never holds commits back (`idle` is
always true): after a crash the rest of the flow is counted from where the replay
resumes, so a flow that spans a crash is reported in two parts.

A connection whose plaintext `--tls` captured is seen twice: as its plaintext (a `tls:`
flow, dissected into calls) and as ciphertext on the wire (a `tcp:` flow of TLS records).
The ciphertext then adds nothing but a duplicate edge, so it gets no record when the
worker has seen the plaintext twin (`TlsTwins`; the publisher keys both flows alike so
they reach the same worker). The plaintext comes before the ciphertext's FIN (the agent
reads it as the process writes and reads it); a ciphertext flow closed before any of its
plaintext arrived still gets its row. A TLS flow without plaintext is flagged `encrypted`:
what coverage counts as undecrypted (schemas/coverage.py).
"""

from __future__ import annotations

from schemas.coverage import ENCRYPTED
from streams.dissect.base import DissectEvent, new_call
from streams.reassembly.events import Direction, Flow

DEFAULT_MAX_TWINS = 1 << 16  # TLS plaintext connections remembered per worker


def connection_of(flow_id: str) -> str:
    """A flow id without its transport: the ciphertext and plaintext flows of one TLS
    connection (`tcp:a-b`, `tls:a-b`) give the same string."""
    return flow_id.partition(":")[2]


def looks_like_tls(first_bytes: bytes) -> bool:
    """A TLS record header: content type 20-23 (handshake, alert, data...), version 3.x."""
    return len(first_bytes) >= 3 and 20 <= first_bytes[0] <= 23 and first_bytes[1] == 3


class TlsTwins:
    """Connections whose TLS plaintext this worker has seen (the most recent `cap`)."""

    def __init__(self, cap: int = DEFAULT_MAX_TWINS) -> None:
        self.cap = cap
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first

    def saw_plaintext(self, flow_id: str) -> None:
        seen = self._seen
        seen[connection_of(flow_id)] = None
        if len(seen) > self.cap:
            del seen[next(iter(seen))]

    def has_plaintext(self, flow_id: str) -> bool:
        return connection_of(flow_id) in self._seen


class OpaqueDissector:
    def __init__(self, flow: Flow, protocol: str, twins: TlsTwins | None = None) -> None:
        self.flow = flow
        self.protocol = protocol
        self.twins = twins
        self.first_bytes = b""  # the flow's first bytes: TLS records or not
        self.first_seq: int | None = None
        self.first_ts = 0
        self.sent = [0, 0]  # bytes client→server, server→client
        self.first = [0, 0]  # first and last timestamps per direction
        self.last = [0, 0]
        self.lost = 0

    def receive(
        self, direction: Direction, data: bytes, ts_ns: int, seq: int
    ) -> list[DissectEvent]:
        if self.first_seq is None:
            self.first_seq, self.first_ts = seq, ts_ns
            self.first_bytes = bytes(data[:3])
        d = int(direction)
        self.sent[d] += len(data)
        if not self.first[d]:
            self.first[d] = ts_ns
        self.last[d] = max(self.last[d], ts_ns)
        return []

    def gap(self, direction: Direction, size: int, ts_ns: int) -> list[DissectEvent]:
        self.lost += size
        return []

    def close(self, ts_ns: int) -> list[DissectEvent]:
        if self.first_seq is None:
            return []
        twins = self.twins
        encrypted = self.protocol == "tcp" and looks_like_tls(self.first_bytes)
        if encrypted and twins is not None and twins.has_plaintext(self.flow.flow_id):
            return []  # the plaintext twin's calls already show this connection
        flags = ("gap",) if self.lost else ()
        if encrypted:  # TLS seen on the wire and no plaintext of it: coverage counts these
            flags += (ENCRYPTED,)
        return [
            new_call(
                self.flow,
                self.protocol,
                self.first_seq,
                self.first_ts,
                request_body_size=self.sent[0],
                request_end_ns=self.last[0],
                response_body_size=self.sent[1],
                response_ts_ns=self.first[1],
                response_end_ns=self.last[1],
                flags=flags,
            )
        ]

    @property
    def idle(self) -> bool:
        return True
