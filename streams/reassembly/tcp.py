"""Sans-IO TCP reassembly: captured segments in, ordered byte streams per direction out.

`TcpReassembler.feed(segment)` returns a list of `StreamEvent`s. Per flow (keyed by the
canonical flow id) and per direction it tracks the next expected sequence number, keeps a
bounded buffer of out-of-order data, drops retransmitted bytes (the first copy of a byte
wins), and when bytes are known to be lost it emits `GapSkipped` and resumes after the
hole. Positions are kept as unbounded stream offsets, so sequence wraparound (mod 2**32)
and streams longer than 4 GiB both work.

Rules in brief:

* Roles: the sender of a SYN is the client (the receiver of a SYN+ACK); without a
  handshake a port guess decides (a port < 1024, else a common server port, is the
  server side), else the first sender is the client. Roles may still change while no
  byte of the flow has been delivered (a late SYN), never after.
* `StreamOpened` is emitted lazily, right before the first `DataReceived` or `GapSkipped`
  of a flow; a flow that never carries data (a port scan, a refused connection) emits
  nothing at all, not even `StreamClosed`.
* Start of a direction: ISN + 1 from its SYN (or from the peer's SYN+ACK ack), else the
  first segment that carries payload.
* Holes are skipped (`GapSkipped`) when the buffer cap is exceeded, when the peer acks
  bytes we never saw while data waits behind the hole, and when the flow closes
  (FIN from both sides, RST, idle, end of input, eviction).
* After FIN/RST a tombstone lingers `closed_linger_ns`, so late retransmits do not open
  a new mid-stream flow; a SYN on the same 4-tuple starts a new flow at once.

The in-order case is one dict lookup, a few comparisons and one `DataReceived` per
segment; everything else goes through `_feed_slow`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from dataclasses import asdict, dataclass

from schemas.records import ACK, FIN, RST, SYN, Segment, record_maker, segment_flow_id
from streams.reassembly.events import (
    DataReceived,
    Direction,
    Flow,
    GapSkipped,
    StreamClosed,
    StreamEvent,
    StreamOpened,
)

__all__ = ["COMMON_SERVER_PORTS", "ReassemblyStats", "TcpReassembler"]

_MASK = 0xFFFFFFFF
_HALF = 1 << 31
# Largest plausible distance ahead of the next expected byte (max window with scaling).
_MAX_WINDOW = 1 << 30
_SLOW_FLAGS = SYN | FIN | RST
_C2S = Direction.CLIENT_TO_SERVER
_S2C = Direction.SERVER_TO_CLIENT

_data_received = record_maker(DataReceived)  # DataReceived(...) at half the cost

# Transports that are TCP byte streams: TCP itself, and TLS plaintext of a TCP connection
# (fed to a reassembler of its own: its flow ids differ from the ciphertext's).
_STREAMS = frozenset({"tcp", "tls"})

COMMON_SERVER_PORTS = frozenset(
    {8080, 8000, 8443, 3000, 5000, 6379, 9092, 5432, 3306, 27017, 5672, 53}
)


def _sdelta(a: int, b: int) -> int:
    """Signed distance a - b in sequence space, in [-2**31, 2**31)."""
    return ((a - b + _HALF) & _MASK) - _HALF


def _dst_is_server(sport: int, dport: int) -> int:
    """Port guess: 1 if the destination looks like the server, -1 the source, 0 unsure."""
    s_low, d_low = sport < 1024, dport < 1024
    if s_low != d_low:
        return 1 if d_low else -1
    if not s_low:
        s_common, d_common = sport in COMMON_SERVER_PORTS, dport in COMMON_SERVER_PORTS
        if s_common != d_common:
            return 1 if d_common else -1
        if not s_common:
            return 0
    # both well-known or both common server ports: the lower one serves
    if sport == dport:
        return 0
    return 1 if dport < sport else -1


@dataclass(slots=True)
class ReassemblyStats:
    """Counters (and two gauges: `flows`, `buffered_bytes`)."""

    segments: int = 0  # TCP segments fed
    bytes: int = 0  # payload bytes fed
    delivered_bytes: int = 0  # bytes emitted in DataReceived
    retransmits: int = 0  # segments whose payload was entirely delivered or buffered already
    overlaps: int = 0  # segments partly overlapping bytes already seen (overlap trimmed)
    out_of_order: int = 0  # segments buffered because they arrived ahead of a hole
    gaps: int = 0  # GapSkipped events
    gap_bytes: int = 0  # bytes those gaps skipped
    ack_gaps: int = 0  # gaps skipped because the peer acked bytes we never saw
    dropped_over_cap: int = 0  # gaps forced by the per-direction buffer cap
    out_of_window: int = 0  # segments too far ahead to be plausible (dropped)
    after_fin: int = 0  # segments with bytes beyond the direction's FIN (trimmed)
    bad_syn: int = 0  # SYN+ACK contradicting a direction already started (SYN ignored)
    late_after_close: int = 0  # segments dropped on a tombstone
    udp_ignored: int = 0  # non-TCP segments
    flows_created: int = 0
    flows_opened: int = 0  # flows that emitted StreamOpened
    closed_fin: int = 0
    closed_rst: int = 0
    closed_idle: int = 0
    closed_eof: int = 0
    closed_reused: int = 0  # a SYN with a new ISN replaced a flow on the same 4-tuple
    evicted: int = 0
    flows: int = 0  # gauge: flows tracked now
    buffered_bytes: int = 0  # gauge: out-of-order bytes buffered now, all flows

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Half:
    """One direction of a connection: the bytes one side sends."""

    __slots__ = (
        "conn",
        "peer",
        "key",
        "direction",
        "started",
        "isn",
        "next_seq",
        "next_abs",
        "fast_seq",
        "buf",
        "buf_bytes",
        "fin_abs",
        "acked",
    )

    def __init__(self, conn: _Conn, key: tuple[str, int, str, int]) -> None:
        self.conn = conn
        self.key = key
        self.direction = _C2S
        self.started = False
        self.isn: int | None = None
        self.next_seq = 0  # sequence number of the next byte to deliver (mod 2**32)
        self.next_abs = 0  # the same as an offset from the start of the direction
        self.fast_seq = -1  # == next_seq when the in-order fast path applies, else -1
        # Out-of-order data as sorted, non-overlapping (start_abs, end_abs, data, ts_ns).
        # Invariant after every call: empty, or buf[0][0] > next_abs.
        self.buf: list[tuple[int, int, bytes, int]] = []
        self.buf_bytes = 0
        self.fin_abs: int | None = None
        self.acked: int | None = None  # latest ack the peer sent for this direction

    def start(self, seq: int) -> None:
        self.started = True
        self.next_seq = seq & _MASK
        self.next_abs = 0
        self.fast_seq = self.next_seq if self.fin_abs is None else -1


class _Conn:
    __slots__ = ("flow_id", "flow", "opened", "fwd", "rev", "first_ts", "last_ts", "pos_ts")

    def __init__(self, flow_id: str, ts: int) -> None:
        self.flow_id = flow_id
        self.flow: Flow
        self.opened = False
        self.fwd: _Half  # the direction of the segment that created the flow
        self.rev: _Half
        self.first_ts = ts
        self.last_ts = ts  # latest segment time
        self.pos_ts = ts  # time the flow was (re)placed in the LRU order


class TcpReassembler:
    """Reassemble TCP streams from captured segments. Not thread-safe; one per partition."""

    def __init__(
        self,
        *,
        max_buffered_bytes_per_direction: int = 1 << 20,
        max_flows: int = 100_000,
        idle_timeout_ns: int = 120 * 10**9,
        closed_linger_ns: int = 10 * 10**9,
        max_buffered_segments_per_direction: int = 8192,
    ) -> None:
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        self.max_buffered_bytes = max_buffered_bytes_per_direction
        self.max_buffered_segments = max(1, max_buffered_segments_per_direction)
        self.max_flows = max_flows
        self.idle_timeout_ns = idle_timeout_ns
        self.closed_linger_ns = closed_linger_ns
        self.stats = ReassemblyStats()
        # directional 4-tuple -> half; both directions of every live flow are here
        self._halves: dict[tuple[str, int, str, int], _Half] = {}
        # flow id -> connection, roughly least recently active first (see _evict_one)
        self._flows: OrderedDict[str, _Conn] = OrderedDict()
        # flow id -> ts_ns until which late segments of a closed flow are dropped
        self._tombs: OrderedDict[str, int] = OrderedDict()

    # -- public ------------------------------------------------------------------------
    def feed(self, seg: Segment) -> list[StreamEvent]:
        h = self._halves.get((seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port))
        if h is None or seg.flags & _SLOW_FLAGS or seg.transport not in _STREAMS:
            return self._feed_slow(seg, h)
        st = self.stats
        st.segments += 1
        ts = seg.ts_ns
        conn = h.conn
        if ts > conn.last_ts:
            conn.last_ts = ts
        out: list[StreamEvent] = []
        if seg.flags & ACK:
            peer = h.peer
            peer.acked = seg.ack
            if peer.buf:
                self._ack_skip(peer, ts, out)
        payload = seg.payload
        if payload:
            n = len(payload)
            st.bytes += n
            seq = seg.seq
            if seq == h.fast_seq and not h.buf:
                if not conn.opened:
                    self._open(conn, out)
                out.append(_data_received(conn.flow, h.direction, payload, ts, seq))
                h.next_abs += n
                h.next_seq = h.fast_seq = (seq + n) & _MASK
                st.delivered_bytes += n
            else:
                self._on_data(h, seq, payload, ts, out)
        return out

    def expire(self, now_ns: int) -> list[StreamEvent]:
        """Close flows with no segment for `idle_timeout_ns` (reason "idle"); drop old
        tombstones."""
        out: list[StreamEvent] = []
        flows, idle = self._flows, self.idle_timeout_ns
        while flows:
            fid, conn = next(iter(flows.items()))
            if now_ns - conn.pos_ts < idle:
                break
            if now_ns - conn.last_ts >= idle:
                self._close(conn, "idle", now_ns, out, tomb=False)
            else:
                conn.pos_ts = conn.last_ts
                flows.move_to_end(fid)
        tombs = self._tombs
        while tombs:
            fid, until = next(iter(tombs.items()))
            if until > now_ns:
                break
            del tombs[fid]
        return out

    def close_all(self, ts_ns: int) -> list[StreamEvent]:
        """End of input: flush and close every flow (reason "eof")."""
        out: list[StreamEvent] = []
        for conn in list(self._flows.values()):
            self._close(conn, "eof", ts_ns, out, tomb=False)
        self._tombs.clear()
        return out

    def is_quiescent(self, flow_id: str) -> bool:
        """True when nothing of the flow waits behind a hole: no out-of-order bytes
        buffered and no FIN seen ahead of undelivered bytes (or the flow is unknown)."""
        conn = self._flows.get(flow_id)
        if conn is None:
            return True
        for h in (conn.fwd, conn.rev):
            if h.buf or (h.fin_abs is not None and h.fin_abs > h.next_abs):
                return False
        return True

    @property
    def active_flows(self) -> int:
        return len(self._flows)

    def buffered_bytes(self, flow_id: str) -> tuple[int, int]:
        """Out-of-order bytes buffered for (client→server, server→client)."""
        conn = self._flows.get(flow_id)
        if conn is None:
            return (0, 0)
        a, b = conn.fwd, conn.rev
        if a.direction is not _C2S:
            a, b = b, a
        return (a.buf_bytes, b.buf_bytes)

    # -- flows -------------------------------------------------------------------------
    def _new_conn(self, seg: Segment, fid: str) -> _Half:
        ts = seg.ts_ns
        conn = _Conn(fid, ts)
        fwd_key = (seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port)
        rev_key = (seg.dst_ip, seg.dst_port, seg.src_ip, seg.src_port)
        fwd, rev = _Half(conn, fwd_key), _Half(conn, rev_key)
        fwd.peer, rev.peer = rev, fwd
        conn.fwd, conn.rev = fwd, rev
        flags = seg.flags
        if flags & SYN:
            sender_is_client = not flags & ACK
        else:
            sender_is_client = _dst_is_server(seg.src_port, seg.dst_port) >= 0
        self._set_roles(conn, fwd if sender_is_client else rev, seg.node, seg.source)
        self._halves[fwd_key] = fwd
        self._halves[rev_key] = rev
        self._flows[fid] = conn
        st = self.stats
        st.flows_created += 1
        st.flows = len(self._flows)
        return fwd

    @staticmethod
    def _set_roles(
        conn: _Conn, client: _Half, node: str | None = None, source: str | None = None
    ) -> None:
        server = client.peer
        client.direction, server.direction = _C2S, _S2C
        old = getattr(conn, "flow", None)
        c_ip, c_port, s_ip, s_port = client.key
        conn.flow = Flow(
            conn.flow_id,
            c_ip,
            c_port,
            s_ip,
            s_port,
            node if node is not None else old.node,
            source if source is not None else old.source,
        )

    def _open(self, conn: _Conn, out: list[StreamEvent]) -> None:
        conn.opened = True
        self.stats.flows_opened += 1
        out.append(StreamOpened(conn.flow, conn.first_ts))

    def _forget(self, conn: _Conn) -> None:
        halves = self._halves
        for h in (conn.fwd, conn.rev):
            if halves.get(h.key) is h:
                del halves[h.key]
            if h.buf:
                self.stats.buffered_bytes -= h.buf_bytes
                h.buf = []
                h.buf_bytes = 0
        if self._flows.get(conn.flow_id) is conn:
            del self._flows[conn.flow_id]
        self.stats.flows = len(self._flows)

    def _close(
        self, conn: _Conn, reason: str, ts: int, out: list[StreamEvent], *, tomb: bool
    ) -> None:
        first, second = conn.fwd, conn.rev
        if first.direction is not _C2S:
            first, second = second, first
        for h in (first, second):
            self._flush(h, ts, out, tail=reason == "fin")
        if conn.opened:
            out.append(StreamClosed(conn.flow, reason, ts))
        self._forget(conn)
        st = self.stats
        if reason == "evicted":
            st.evicted += 1
        else:
            name = "closed_" + reason
            setattr(st, name, getattr(st, name) + 1)
        if tomb and self.closed_linger_ns > 0:
            tombs = self._tombs
            tombs[conn.flow_id] = ts + self.closed_linger_ns
            tombs.move_to_end(conn.flow_id)
            while len(tombs) > self.max_flows:
                tombs.popitem(last=False)

    def _evict_one(self, ts: int, out: list[StreamEvent]) -> None:
        """Close the least recently active flow. The order of `_flows` is by `pos_ts`;
        a flow active since it was placed is moved to the back instead, so the first flow
        with `last_ts == pos_ts` is the least recently active of all."""
        flows = self._flows
        while flows:
            fid, conn = next(iter(flows.items()))
            if conn.last_ts > conn.pos_ts:
                conn.pos_ts = conn.last_ts
                flows.move_to_end(fid)
                continue
            self._close(conn, "evicted", ts, out, tomb=False)
            return

    # -- segments ----------------------------------------------------------------------
    def _feed_slow(self, seg: Segment, h: _Half | None) -> list[StreamEvent]:
        st = self.stats
        out: list[StreamEvent] = []
        if seg.transport not in _STREAMS:
            st.udp_ignored += 1
            return out
        st.segments += 1
        flags, ts, payload = seg.flags, seg.ts_ns, seg.payload
        st.bytes += len(payload)
        if h is None:
            if flags & RST:
                return out  # nothing to reset; no flow for a bare RST
            fid = segment_flow_id(seg)
            until = self._tombs.get(fid)
            if until is not None:
                if flags & SYN or ts >= until:
                    del self._tombs[fid]
                else:
                    st.late_after_close += 1
                    return out
            if len(self._flows) >= self.max_flows:
                self._evict_one(ts, out)
            h = self._new_conn(seg, fid)
        conn = h.conn
        if ts > conn.last_ts:
            conn.last_ts = ts
        if flags & RST:
            self._close(conn, "rst", ts, out, tomb=True)
            return out
        seq = seg.seq
        if flags & SYN:
            h = self._on_syn(h, seg, out)
            conn = h.conn
            seq = (seq + 1) & _MASK
        if flags & ACK:
            peer = h.peer
            peer.acked = seg.ack
            if peer.buf:
                self._ack_skip(peer, ts, out)
        if payload:
            self._on_data(h, seq, payload, ts, out)
        if flags & FIN:
            self._on_fin(h, (seq + len(payload)) & _MASK, ts, out)
        return out

    def _on_syn(self, h: _Half, seg: Segment, out: list[StreamEvent]) -> _Half:
        isn, flags, conn = seg.seq, seg.flags, h.conn
        syn_only = not flags & ACK
        if h.started or (syn_only and conn.opened):
            if h.isn == isn or (
                h.isn is None and h.next_abs == 0 and h.next_seq == (isn + 1) & _MASK
            ):
                # a retransmitted SYN, or one confirming where this direction was started
                # (from the peer's SYN+ACK)
                h.isn = isn
                if not conn.opened:
                    self._set_roles(conn, h if syn_only else h.peer)
                return h
            if not syn_only:
                self.stats.bad_syn += 1
                return h
            # A new connection on the same 4-tuple: the old one ended unseen.
            if conn.opened:
                self._close(conn, "reused", seg.ts_ns, out, tomb=False)
            else:
                self._forget(conn)
            if len(self._flows) >= self.max_flows:
                self._evict_one(seg.ts_ns, out)
            h = self._new_conn(seg, conn.flow_id)
            conn = h.conn
        h.isn = isn
        h.start(isn + 1)
        if not conn.opened:
            self._set_roles(conn, h if syn_only else h.peer)
        if not syn_only and not h.peer.started:
            h.peer.start(seg.ack)  # the SYN+ACK acks the client's ISN + 1
        return h

    def _on_data(self, h: _Half, seq: int, data: bytes, ts: int, out: list[StreamEvent]) -> None:
        st = self.stats
        if not h.started:
            h.start(seq)
        d = _sdelta(seq, h.next_seq)
        nxt = h.next_abs
        start = nxt + d
        end = start + len(data)
        if d > _MAX_WINDOW:
            st.out_of_window += 1
            return
        fin = h.fin_abs
        if fin is not None and end > fin:
            st.after_fin += 1
            if start >= fin:
                return
            data = data[: fin - start]
            end = fin
        if end <= nxt:
            st.retransmits += 1
            return
        if start < nxt:
            st.overlaps += 1
            data = data[nxt - start :]
            start = nxt
        if start == nxt and not h.buf:
            self._deliver(h, data, ts, out)
            return
        self._insert(h, start, end, data, ts)
        if h.buf and h.buf[0][0] == h.next_abs:
            self._drain(h, out)
        if h.buf and h.acked is not None:
            self._ack_skip(h, ts, out)
        self._enforce_cap(h, ts, out)

    def _on_fin(self, h: _Half, fin_seq: int, ts: int, out: list[StreamEvent]) -> None:
        if not h.started:
            h.start(fin_seq)
        if h.fin_abs is None:
            d = _sdelta(fin_seq, h.next_seq)
            if d > _MAX_WINDOW:
                self.stats.out_of_window += 1
                return
            fin = h.next_abs + max(d, 0)
            h.fin_abs = fin
            h.fast_seq = -1
            buf = h.buf
            if buf and buf[-1][1] > fin:  # drop buffered bytes beyond the FIN
                keep = bisect_left(buf, (fin,))
                dropped = buf[keep:]
                del buf[keep:]
                for piece in dropped:
                    self._unbuffer(h, len(piece[2]))
                if buf and buf[-1][1] > fin:
                    start, end, data, seg_ts = buf.pop()
                    self._unbuffer(h, len(data))
                    buf.append((start, fin, data[: fin - start], seg_ts))
                    self._rebuffer(h, fin - start)
                self.stats.after_fin += 1
        if h.peer.fin_abs is not None:
            self._close(h.conn, "fin", ts, out, tomb=True)

    # -- byte bookkeeping --------------------------------------------------------------
    def _deliver(self, h: _Half, data: bytes, ts: int, out: list[StreamEvent]) -> None:
        conn = h.conn
        if not conn.opened:
            self._open(conn, out)
        n = len(data)
        out.append(_data_received(conn.flow, h.direction, data, ts, h.next_seq))
        h.next_abs += n
        h.next_seq = (h.next_seq + n) & _MASK
        h.fast_seq = h.next_seq if h.fin_abs is None else -1
        self.stats.delivered_bytes += n

    def _skip(self, h: _Half, target: int, ts: int, out: list[StreamEvent]) -> None:
        size = target - h.next_abs
        if size <= 0:
            return
        conn = h.conn
        if not conn.opened:
            self._open(conn, out)
        out.append(GapSkipped(conn.flow, h.direction, size, ts))
        h.next_abs = target
        h.next_seq = (h.next_seq + size) & _MASK
        if h.fast_seq != -1:
            h.fast_seq = h.next_seq
        st = self.stats
        st.gaps += 1
        st.gap_bytes += size

    def _unbuffer(self, h: _Half, n: int) -> None:
        h.buf_bytes -= n
        self.stats.buffered_bytes -= n

    def _rebuffer(self, h: _Half, n: int) -> None:
        h.buf_bytes += n
        self.stats.buffered_bytes += n

    def _insert(self, h: _Half, start: int, end: int, data: bytes, ts: int) -> None:
        """Buffer [start, end) minus the bytes already buffered (the first copy wins)."""
        buf = h.buf
        ahead = start > h.next_abs
        i = bisect_left(buf, (start,))
        if i and buf[i - 1][1] > start:  # the previous piece covers our head
            start = buf[i - 1][1]
        origin = end - len(data)
        added = 0
        while start < end:
            if i < len(buf) and buf[i][0] < end:
                nxt_start, nxt_end = buf[i][0], buf[i][1]
                if start < nxt_start:
                    buf.insert(i, (start, nxt_start, data[start - origin : nxt_start - origin], ts))
                    added += nxt_start - start
                    i += 1
                start = max(start, nxt_end)
                i += 1
            else:
                piece = data if start == origin else data[start - origin :]
                buf.insert(i, (start, end, piece, ts))
                added += end - start
                break
        st = self.stats
        if added:
            self._rebuffer(h, added)
            if ahead:
                st.out_of_order += 1
            if added < len(data):
                st.overlaps += 1
        else:
            st.retransmits += 1

    def _drain(self, h: _Half, out: list[StreamEvent]) -> None:
        """Deliver the buffered pieces that now start at (or before) the next byte."""
        buf = h.buf
        i = 0
        while i < len(buf) and buf[i][0] <= h.next_abs:
            start, end, data, ts = buf[i]
            i += 1
            self._unbuffer(h, len(data))
            if end <= h.next_abs:
                continue
            if start < h.next_abs:
                data = data[h.next_abs - start :]
            self._deliver(h, data, ts, out)
        if i:
            del buf[:i]

    def _ack_skip(self, h: _Half, ts: int, out: list[StreamEvent]) -> None:
        """The peer acked bytes of `h` we never saw while data waits behind the hole:
        those bytes are lost to us, so skip them."""
        d = _sdelta(h.acked, h.next_seq)
        if d <= 0 or d > _MAX_WINDOW:
            return
        acked = h.next_abs + d
        buf = h.buf
        while buf and h.next_abs < acked:
            self._skip(h, min(acked, buf[0][0]), ts, out)
            self.stats.ack_gaps += 1
            self._drain(h, out)

    def _enforce_cap(self, h: _Half, ts: int, out: list[StreamEvent]) -> None:
        buf = h.buf
        while buf and (
            h.buf_bytes > self.max_buffered_bytes or len(buf) > self.max_buffered_segments
        ):
            self.stats.dropped_over_cap += 1
            self._skip(h, buf[0][0], ts, out)
            self._drain(h, out)

    def _flush(self, h: _Half, ts: int, out: list[StreamEvent], *, tail: bool) -> None:
        buf = h.buf
        while buf:
            self._skip(h, buf[0][0], ts, out)
            self._drain(h, out)
        if tail and h.fin_abs is not None and h.fin_abs > h.next_abs:
            self._skip(h, h.fin_abs, ts, out)
