"""Flows no dissector claims still count: one `tcp` (or `udp`) record per flow with its
endpoints, bytes each way and duration, so the service map shows every edge.

The record is emitted when the flow closes. It never holds commits back (`idle` is
always true): after a crash the rest of the flow is counted from where the replay
resumes, so a flow that spans a crash is reported in two parts.
"""

from __future__ import annotations

from streams.dissect.base import DissectEvent, new_call
from streams.reassembly.events import Direction, Flow


class OpaqueDissector:
    def __init__(self, flow: Flow, protocol: str) -> None:
        self.flow = flow
        self.protocol = protocol
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
                flags=("gap",) if self.lost else (),
            )
        ]

    @property
    def idle(self) -> bool:
        return True
