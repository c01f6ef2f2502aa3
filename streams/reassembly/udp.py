"""UDP "flows": datagrams of one 4-tuple, with roles decided, as the same stream events
TCP reassembly gives (one `DataReceived` per datagram). A datagram's `seq` is the CRC-32 of
its payload, not its number in the flow: a call's id (flow, seq, ts) must not depend on where
a replay started reading the partition, and a datagram carries no position of its own.

Nothing to reorder or resync: a datagram is a whole message. A flow closes when idle.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass

from schemas.records import Segment, flow_id
from streams.reassembly.events import (
    DataReceived,
    Direction,
    Flow,
    StreamClosed,
    StreamEvent,
    StreamOpened,
)
from streams.reassembly.tcp import _dst_is_server

DEFAULT_UDP_IDLE_NS = 30 * 1_000_000_000
DEFAULT_MAX_UDP_FLOWS = 100_000


@dataclass(slots=True)
class _UdpFlow:
    flow: Flow
    last_ts: int


class UdpTracker:
    def __init__(
        self, idle_timeout_ns: int = DEFAULT_UDP_IDLE_NS, max_flows: int = DEFAULT_MAX_UDP_FLOWS
    ) -> None:
        self.idle_timeout_ns = idle_timeout_ns
        self.max_flows = max_flows
        self._flows: OrderedDict[str, _UdpFlow] = OrderedDict()

    def feed(self, seg: Segment, fid: str | None = None) -> list[StreamEvent]:
        fid = fid or flow_id(seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port, "udp")
        out: list[StreamEvent] = []
        state = self._flows.get(fid)
        if state is None:
            if len(self._flows) >= self.max_flows:
                old_fid, old = self._flows.popitem(last=False)
                out.append(StreamClosed(old.flow, "evicted", seg.ts_ns))
            # The sender of the first datagram is the client unless the ports say otherwise.
            if _dst_is_server(seg.src_port, seg.dst_port) >= 0:
                flow = Flow(fid, seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port, seg.node,
                            seg.source)  # fmt: skip
            else:
                flow = Flow(fid, seg.dst_ip, seg.dst_port, seg.src_ip, seg.src_port, seg.node,
                            seg.source)  # fmt: skip
            state = self._flows[fid] = _UdpFlow(flow, seg.ts_ns)
            out.append(StreamOpened(flow, seg.ts_ns))
        else:
            self._flows.move_to_end(fid)
        flow = state.flow
        direction = (
            Direction.CLIENT_TO_SERVER
            if (seg.src_ip, seg.src_port) == (flow.client_ip, flow.client_port)
            else Direction.SERVER_TO_CLIENT
        )
        state.last_ts = max(state.last_ts, seg.ts_ns)
        out.append(DataReceived(flow, direction, seg.payload, seg.ts_ns, zlib.crc32(seg.payload)))
        return out

    def expire(self, now_ns: int) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        flows = self._flows
        while flows:
            fid, state = next(iter(flows.items()))
            if now_ns - state.last_ts < self.idle_timeout_ns:
                break
            del flows[fid]
            out.append(StreamClosed(state.flow, "idle", now_ns))
        return out

    def close_all(self, ts_ns: int) -> list[StreamEvent]:
        out: list[StreamEvent] = [StreamClosed(s.flow, "eof", ts_ns) for s in self._flows.values()]
        self._flows.clear()
        return out

    @property
    def active_flows(self) -> int:
        return len(self._flows)
