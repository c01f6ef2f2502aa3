"""Live capture: AF_PACKET rings on one, several or all interfaces → `Segment`s.

    cap = AfPacketCapture(["eth0"], ports=[80], hosts=[], node="node-1")
    while running:
        for seg in cap.poll(0.2): ...
    cap.stats()  # packets, segments, kernel_drops, skipped reasons, ...
    cap.close()

Which copies of a packet are kept: on `lo` every packet shows up twice (sent, then
received), so the socket's filter drops the sent copy (PACKET_OUTGOING) in the kernel.
On a named interface both directions are kept (the packets a pod receives leave the host
side of its veth as OUTGOING). On all interfaces at once, a packet the host forwards (in
on one veth, out on another or on the uplink) would show up twice too: its OUTGOING copy
is skipped when the same packet was received moments before (`ForwardedCopies`); packets
the host itself sends are kept.
"""

from __future__ import annotations

import select
from collections import OrderedDict

from producers.afpacket.bpf import CaptureFilter, capture_filter
from producers.afpacket.ring import PACKET_OUTGOING, RingSpec, read_block
from producers.afpacket.ring_socket import KernelStats, RingSocket
from producers.decode import LINKTYPE_RAW, make_decoder
from schemas.records import Segment

__all__ = ["AfPacketCapture", "ForwardedCopies", "fingerprint"]


def fingerprint(buf: bytes, start: int, end: int) -> bytes:
    """What stays the same when a router forwards an IP packet (TTL/hop limit and IPv4
    header checksum change): addresses, lengths, ids and the first transport bytes."""
    if end - start >= 20 and buf[start] >> 4 == 4:
        ihl = (buf[start] & 0x0F) << 2
        return (
            buf[start + 2 : start + 8]
            + buf[start + 9 : start + 10]
            + buf[start + 12 : start + 20]
            + buf[start + ihl : start + ihl + 16]
        )
    return buf[start + 4 : start + 7] + buf[start + 8 : start + 56]


class ForwardedCopies:
    """Pure: remembers fingerprints of the last `capacity` received packets, so the sent
    copy of a forwarded packet can be recognised (and each is matched once)."""

    def __init__(self, capacity: int = 16384) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def received(self, key: bytes) -> None:
        seen = self._seen
        seen[key] = None
        if len(seen) > self.capacity:
            seen.popitem(last=False)

    def is_forwarded(self, key: bytes) -> bool:
        """True (once) when a packet sent now was received moments before."""
        try:
            del self._seen[key]
        except KeyError:
            return False
        return True


# A host no packet comes from or goes to: the filter of a capture with no targets.
NO_HOST = "0.0.0.0"


class AfPacketCapture:
    def __init__(
        self,
        interfaces: list[str] | None = None,
        *,
        ports: list[int] | None = None,
        hosts: list[str] | None = None,
        netns: str | None = None,
        node: str = "",
        spec: RingSpec | None = None,
        capture_filter_: CaptureFilter | None = None,
    ) -> None:
        self._ports, self._hosts = ports or [], hosts or []
        self._excluded: list[int] = []
        self.filter = capture_filter_ or capture_filter(self._ports, self._hosts)
        self.skipped: dict[str, int] = {}
        self.packets = 0  # frames read from the rings
        self.segments = 0
        self.forwarded_skipped = 0  # sent copies of forwarded packets
        self._decode = make_decoder(LINKTYPE_RAW, self.skipped, node=node, source="afpacket")
        self._forwarded = ForwardedCopies()
        self.sockets: list[RingSocket] = []
        try:
            for name in interfaces or [None]:
                self.sockets.append(
                    RingSocket(name, netns=netns, spec=spec, program=self.filter.program)
                )
        except BaseException:
            self.close()
            raise
        self._poller = select.poll()
        for rs in self.sockets:
            self._poller.register(rs.fd, select.POLLIN | select.POLLERR)

    def exclude_ports(self, ports: list[int]) -> None:
        """Leave out traffic on these ports from now on (the pipeline's own Kafka
        connections); what the rings hold so far is dropped unread."""
        self._excluded = list(ports)
        self._refilter()

    def set_hosts(self, hosts: list[str]) -> None:
        """Capture only traffic to or from these IPs from now on (the targeted pods, as
        they come and go); an empty list captures nothing."""
        self._hosts = list(hosts) or [NO_HOST]
        self._refilter()

    def _refilter(self) -> None:
        self.filter = capture_filter(self._ports, self._hosts, exclude_ports=self._excluded)
        for rs in self.sockets:
            rs.attach_filter(self.filter.program)

    @property
    def where(self) -> str:
        return ", ".join(rs.where for rs in self.sockets)

    def poll(self, timeout_s: float) -> list[Segment]:
        """Segments from every block handed over so far; waits up to `timeout_s` for one."""
        out: list[Segment] = []
        self._collect(out)
        if not out and timeout_s > 0:
            self._poller.poll(int(timeout_s * 1000))
            self._collect(out)
        return out

    def _collect(self, out: list[Segment]) -> None:
        for rs in self.sockets:
            for block in rs.blocks():
                self._read(rs, block, out)

    def _read(self, rs: RingSocket, block: bytes, out: list[Segment]) -> None:
        decode = self._decode
        append = out.append
        frames = read_block(block)
        self.packets += len(frames)
        every_if = rs.ifindex == 0  # loopback's sent copies never get here (see bpf.py)
        n = len(out)
        for ts, start, end, pkttype, _ifindex in frames:
            if every_if:
                key = fingerprint(block, start, end)
                if pkttype != PACKET_OUTGOING:
                    self._forwarded.received(key)
                elif self._forwarded.is_forwarded(key):
                    self.forwarded_skipped += 1
                    continue
            try:
                seg = decode(block, start, end, ts)
            except Exception:  # a decoder bug must not stop the capture; counted
                self.skipped["decode_error"] = self.skipped.get("decode_error", 0) + 1
                continue
            if seg is not None:
                append(seg)
        self.segments += len(out) - n

    def kernel_stats(self) -> KernelStats:
        """Kernel counters summed over every socket, since the capture started."""
        total = KernelStats()
        for rs in self.sockets:
            if rs.fd >= 0 and not rs.closed:
                rs.kernel_stats()
            total.add(rs.totals)
        return total

    def stats(self) -> dict[str, int]:
        k = self.kernel_stats()
        return {
            "packets": self.packets,
            "segments": self.segments,
            "kernel_packets": k.packets,
            "kernel_drops": k.drops,
            "kernel_freeze_q": k.freeze_q,
            "forwarded_skipped": self.forwarded_skipped,
            **{f"skipped_{reason}": n for reason, n in sorted(self.skipped.items())},
        }

    def close(self) -> None:
        for rs in self.sockets:
            rs.close()

    def __enter__(self) -> AfPacketCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
