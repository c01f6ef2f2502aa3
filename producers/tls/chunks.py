"""Sans-IO: plaintext chunks and socket closes (from the BPF side) in, Segments out.

A TLS socket becomes a SYN-less TCP flow whose sequence numbers count plaintext bytes per
direction, so the reassembler delivers the chunks in order, spots lost chunks as gaps,
and drops the second copy when both ends of a local connection are traced (both number
the same bytes alike). A close becomes a FIN in each direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from producers.tls.sockets import SocketTuple
from schemas.records import FIN, PSH, Segment

EGRESS, INGRESS = 0, 1
_MASK = 0xFFFFFFFF
# How long a close waits for a write that was under way when the socket closed (a Go
# Write's RET comes after another goroutine's close; its bytes count in the close), and a
# read for the writes reserved before it. 2 s was too short once in a full CI run (a
# response stored without its request: the writing goroutine starved on a busy machine).
HOLD_NS = 5_000_000_000


@dataclass(frozen=True, slots=True)
class TlsChunk:
    """Plaintext one process wrote (EGRESS) or read (INGRESS) on socket `fd`."""

    ts_ns: int  # Unix epoch nanoseconds
    pid: int
    fd: int
    direction: int
    offset: int  # stream offset of data[0] in that direction
    data: bytes
    socket: SocketTuple | None = None  # when the BPF side knew it
    late: bool = False  # the fd closed before the call returned (it may be reused already)
    egress_mark: int = 0  # INGRESS: egress bytes reserved when the read returned (go first)


@dataclass(frozen=True, slots=True)
class TlsClose:
    ts_ns: int
    pid: int
    fd: int
    egress_bytes: int
    ingress_bytes: int
    socket: SocketTuple | None = None


Resolver = Callable[[int, int], SocketTuple | None]


@dataclass(slots=True)
class ChunkStats:
    chunks: int = 0
    bytes: int = 0
    closes: int = 0
    unresolved: int = 0  # chunks dropped: their socket's 4-tuple was unknown


@dataclass(slots=True)
class _HeldClose:
    """FINs of a socket closed while a write on it was still to be reported."""

    fins: list[Segment]
    egress_bytes: int  # the close's count: chunks up to here come first
    egress_seen: int
    deadline_ns: int


@dataclass(slots=True)
class _HeldReads:
    """Reads of a socket that returned before the writes they answer were reported (Go's
    net/http writes and reads a connection from two goroutines)."""

    segments: list[Segment]
    egress_mark: int  # the writes up to here come first
    deadline_ns: int


class SegmentMaker:
    """Turns chunks and closes into `source="tls"` Segments; caches 4-tuples per
    (pid, fd) until the fd closes. A close whose write count runs ahead of the chunks
    seen is held (see `flush`) so the late chunk comes before the FIN, on its own socket,
    without touching the next connection that got the same fd. A read whose
    `egress_mark` runs ahead of the writes seen is held the same way, so a response never
    reaches the reassembler before its request."""

    def __init__(self, resolve: Resolver, node: str = "") -> None:
        self._resolve = resolve
        self.node = node
        self.stats = ChunkStats()
        self._sockets: dict[tuple[int, int], SocketTuple] = {}
        # (pid, fd) -> bytes seen per direction, for the FINs of a process that exits
        self._counts: dict[tuple[int, int], list[int]] = {}
        self._held: dict[tuple[int, int, SocketTuple], _HeldClose] = {}
        self._reads: dict[tuple[int, int], _HeldReads] = {}
        self._gave_up: dict[tuple[int, int], int] = {}  # egress marks waited out per (pid, fd)

    def _socket(self, pid: int, fd: int, known: SocketTuple | None) -> SocketTuple | None:
        key = (pid, fd)
        if known is not None:
            self._sockets[key] = known
            return known
        cached = self._sockets.get(key)
        if cached is None:
            cached = self._resolve(pid, fd)
            if cached is not None:
                self._sockets[key] = cached
        return cached

    def chunk(self, c: TlsChunk) -> Segment | None:
        """The chunk's Segment (None: its socket is unknown, or it is a read held until
        its writes arrive, when `flush` gives it). Call `flush` after it."""
        end = c.offset + len(c.data)
        held = None if c.socket is None else self._held.get((c.pid, c.fd, c.socket))
        late = held is not None or c.late  # (pid, fd) may be the next connection's now
        if late:
            sock: SocketTuple | None = c.socket
            if held is not None and c.direction == EGRESS:
                held.egress_seen = max(held.egress_seen, end)
        else:
            sock = self._socket(c.pid, c.fd, c.socket)
        if sock is None:
            self.stats.unresolved += 1
            return None
        self.stats.chunks += 1
        self.stats.bytes += len(c.data)
        if not late:
            counts = self._counts.setdefault((c.pid, c.fd), [0, 0])
            if end > counts[c.direction]:
                counts[c.direction] = end
        segment = self._segment(sock, c.direction, c.offset, c.data, c.ts_ns, PSH)
        if not late and c.direction == INGRESS and self._hold_read(c, segment):
            return None
        return segment

    def _hold_read(self, c: TlsChunk, segment: Segment) -> bool:
        key = (c.pid, c.fd)
        held = self._reads.get(key)
        if held is None:
            ahead = max(self._counts[key][EGRESS], self._gave_up.get(key, 0))
            if c.egress_mark <= ahead:
                return False
            held = self._reads[key] = _HeldReads([], 0, c.ts_ns + HOLD_NS)
        held.segments.append(segment)  # behind the reads held before it, in order
        held.egress_mark = max(held.egress_mark, c.egress_mark)
        return True

    def flush(self, now_ns: int) -> list[Segment]:
        """FINs of held closes whose writes have all arrived, or that waited `HOLD_NS`."""
        out: list[Segment] = []
        for key, reads in list(self._reads.items()):
            if self._counts.get(key, [0, 0])[EGRESS] >= reads.egress_mark:
                out += self._reads.pop(key).segments
            elif now_ns >= reads.deadline_ns:  # a failed or stuck write: stop waiting on it
                self._gave_up[key] = reads.egress_mark
                out += self._reads.pop(key).segments
        for key, held in list(self._held.items()):
            if held.egress_seen >= held.egress_bytes or now_ns >= held.deadline_ns:
                out += held.fins
                del self._held[key]
        return out

    def close(self, c: TlsClose) -> list[Segment]:
        sock = self._socket(c.pid, c.fd, c.socket)
        self._sockets.pop((c.pid, c.fd), None)
        seen = self._counts.pop((c.pid, c.fd), [0, 0])
        reads = self._reads.pop((c.pid, c.fd), None)
        self._gave_up.pop((c.pid, c.fd), None)
        if sock is None:
            return []
        self.stats.closes += 1
        fins = [] if reads is None else reads.segments  # the reads come before the FINs
        fins += [
            self._segment(sock, EGRESS, c.egress_bytes, b"", c.ts_ns, FIN),
            self._segment(sock, INGRESS, c.ingress_bytes, b"", c.ts_ns, FIN),
        ]
        if seen[EGRESS] >= c.egress_bytes:
            return fins
        held = _HeldClose(fins, c.egress_bytes, seen[EGRESS], c.ts_ns + HOLD_NS)
        self._held[(c.pid, c.fd, sock)] = held
        return []

    def exit(self, pid: int, ts_ns: int) -> list[Segment]:
        """A process exited: its sockets closed without close(2); FINs for each."""
        out: list[Segment] = []
        for key in [k for k in self._counts if k[0] == pid]:
            egress, ingress = self._counts[key]
            out += self.close(TlsClose(ts_ns, pid, key[1], egress, ingress))
        for key in [k for k in self._sockets if k[0] == pid]:
            del self._sockets[key]
        for key in [k for k in self._held if k[0] == pid]:  # no write can follow an exit
            out += self._held.pop(key).fins
        return out

    def _segment(
        self, sock: SocketTuple, direction: int, offset: int, data: bytes, ts: int, flags: int
    ) -> Segment:
        local, remote = (sock.local_ip, sock.local_port), (sock.remote_ip, sock.remote_port)
        (src, sport), (dst, dport) = (local, remote) if direction == EGRESS else (remote, local)
        return Segment(
            ts_ns=ts,
            src_ip=src,
            src_port=sport,
            dst_ip=dst,
            dst_port=dport,
            seq=offset & _MASK,
            ack=0,
            flags=flags,
            payload=data,
            node=self.node,
            source="tls",
            transport="tls",  # its own flow ids: the ciphertext flow is another stream
        )
