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
from wiretide.records import FIN, PSH, Segment

EGRESS, INGRESS = 0, 1
_MASK = 0xFFFFFFFF


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


class SegmentMaker:
    """Turns chunks and closes into `source="tls"` Segments; caches 4-tuples per
    (pid, fd) until the fd closes."""

    def __init__(self, resolve: Resolver, node: str = "") -> None:
        self._resolve = resolve
        self.node = node
        self.stats = ChunkStats()
        self._sockets: dict[tuple[int, int], SocketTuple] = {}
        # (pid, fd) -> bytes seen per direction, for the FINs of a process that exits
        self._counts: dict[tuple[int, int], list[int]] = {}

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
        sock = self._socket(c.pid, c.fd, c.socket)
        if sock is None:
            self.stats.unresolved += 1
            return None
        self.stats.chunks += 1
        self.stats.bytes += len(c.data)
        counts = self._counts.setdefault((c.pid, c.fd), [0, 0])
        end = c.offset + len(c.data)
        if end > counts[c.direction]:
            counts[c.direction] = end
        return self._segment(sock, c.direction, c.offset, c.data, c.ts_ns, PSH)

    def close(self, c: TlsClose) -> list[Segment]:
        sock = self._socket(c.pid, c.fd, c.socket)
        self._sockets.pop((c.pid, c.fd), None)
        self._counts.pop((c.pid, c.fd), None)
        if sock is None:
            return []
        self.stats.closes += 1
        return [
            self._segment(sock, EGRESS, c.egress_bytes, b"", c.ts_ns, FIN),
            self._segment(sock, INGRESS, c.ingress_bytes, b"", c.ts_ns, FIN),
        ]

    def exit(self, pid: int, ts_ns: int) -> list[Segment]:
        """A process exited: its sockets closed without close(2); FINs for each."""
        out: list[Segment] = []
        for key in [k for k in self._counts if k[0] == pid]:
            egress, ingress = self._counts[key]
            out += self.close(TlsClose(ts_ns, pid, key[1], egress, ingress))
        for key in [k for k in self._sockets if k[0] == pid]:
            del self._sockets[key]
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
