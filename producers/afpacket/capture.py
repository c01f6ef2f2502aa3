"""Live capture: AF_PACKET rings on one, several or all interfaces → `Segment`s.

    cap = AfPacketCapture(["eth0"], ports=[80], hosts=[], node="node-1")
    while running:
        for seg in cap.poll(0.2): ...      # segment by segment, or:
        cap.gather(0.2)                    # take the blocks handed over so far, then
        for columns in cap.batches(): ...  # decode them at once into flow batches
    cap.stats()  # packets, segments, kernel_drops, skipped reasons, ...
    cap.close()

`batches` decodes a whole run of ring blocks with numpy (`producers.columnar`): a short
Python walk per packet to find it in its block and nothing else per packet, where `poll`
makes a `Segment` of each. Both give the same segments in the same per-flow order.

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

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from producers.afpacket.bpf import CaptureFilter, capture_filter
from producers.afpacket.ring import (
    PACKET_OUTGOING,
    FrameColumns,
    RingSpec,
    block_header,
    frame_columns,
    read_block,
)
from producers.afpacket.ring_socket import KernelStats, RingSocket
from producers.batcher import batch_columns
from producers.columnar import decode_ethernet_ipv4, flow_batches, frame_segments
from producers.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW, make_decoder
from schemas.records import Segment
from schemas.segment_wire import SegmentColumns

__all__ = ["AfPacketCapture", "ForwardedCopies", "fingerprint", "fingerprints"]


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


# fingerprint's bytes as offsets into the packet: IPv4's fixed header part (its transport
# part follows the header, at a per-packet offset), and IPv6's.
_V4_HEADER = np.array([2, 3, 4, 5, 6, 7, 9, *range(12, 20)])
_V6 = np.array([4, 5, 6, *range(8, 56)])
_WINDOW = 56  # bytes of a packet the fingerprint may read
_TRANSPORT = 16


def fingerprints(a: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[bytes]:
    """`fingerprint` of every packet a[start[i]:end[i]] at once (bytes past a packet's end
    read as zeros; IPv4's padded with zeros to IPv6's size), each led by the packet's first
    byte so IPv4 and IPv6 never meet."""
    n = len(start)
    if not n:
        return []
    if int(start.max()) + 2 * _WINDOW > len(a):  # windows read past the last packet
        a = np.concatenate([a, np.zeros(2 * _WINDOW, np.uint8)])
    length = end - start
    w = sliding_window_view(a, _WINDOW)[start] * (np.arange(_WINDOW) < length[:, None])
    ihl = (w[:, 0] & 0x0F).astype(np.int64) << 2
    t = sliding_window_view(a, _TRANSPORT)[start + ihl]
    t = t * (ihl[:, None] + np.arange(_TRANSPORT) < length[:, None])
    keys = np.zeros((n, 1 + len(_V6)), np.uint8)
    keys[:, 0] = w[:, 0]
    v4 = ((w[:, 0] >> 4) == 4) & (length >= 20)
    keys[v4, 1 : 1 + len(_V4_HEADER)] = w[v4][:, _V4_HEADER]
    keys[v4, 1 + len(_V4_HEADER) : 1 + len(_V4_HEADER) + _TRANSPORT] = t[v4]
    keys[~v4, 1:] = w[~v4][:, _V6]
    return keys.view(f"V{keys.shape[1]}")[:, 0].tolist()


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
ETHERNET_LEN = 14
CHUNK_BYTES = 4 << 20  # ring blocks `gather` takes before they are decoded, about
MAX_SEGMENTS = 1024  # per batch from `batches` (as `producers.pcap.read_batches`)
MAX_BYTES = 1 << 20


def as_ethernet(a: np.ndarray, frames: FrameColumns) -> tuple[np.ndarray, np.ndarray]:
    """The ring's packets start at their IP header (SOCK_DGRAM); give each an Ethernet
    EtherType in the 14 bytes before it (padding of the ring, never packet bytes: see
    `ring.LINK_ROOM`) so the Ethernet decoders read them. Returns the
    (start, length) of each packet as an Ethernet frame; `a` is changed in place."""
    start = frames.start - ETHERNET_LEN
    version = a[frames.start] >> 4 if len(a) else np.zeros(0, np.uint8)
    a[start + 12] = np.where(version == 4, 0x08, np.where(version == 6, 0x86, 0))
    a[start + 13] = np.where(version == 6, 0xDD, 0)
    return start, frames.end - start


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
        self._decode_ethernet = make_decoder(
            LINKTYPE_ETHERNET, self.skipped, node=node, source="afpacket"
        )
        self._node = node
        self._names: dict[int, str] = {}  # IPv4 address texts, kept between batches
        self._forwarded = ForwardedCopies()
        self.sockets: list[RingSocket] = []
        self._pending: list[tuple[RingSocket, list[bytes]]] = []  # blocks not yet decoded
        self.pending_bytes = 0
        self.chunk_bytes = CHUNK_BYTES
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
        """Segments from every block handed over so far (and those `gather` took); waits
        up to `timeout_s` for one."""
        self.gather(timeout_s)
        out: list[Segment] = []
        for rs, blocks in self._take_pending():
            for block in blocks:
                self._read(rs, block, out)
        return out

    @property
    def chunk_ready(self) -> bool:
        """A chunk's worth is gathered: decode it (`batches`) before gathering more."""
        return self.pending_bytes >= self.chunk_bytes

    def gather(self, timeout_s: float) -> int:
        """Take the blocks handed over so far from the rings, up to about `chunk_bytes`
        (what is beyond waits in the ring, so memory stays bounded however large the
        ring), giving each back to the kernel at once; they are decoded later by
        `batches` or `poll`. Waits up to `timeout_s` when there is none. Returns the
        packets taken."""
        taken = self._gather()
        if not taken and timeout_s > 0:
            self._poller.poll(int(timeout_s * 1000))
            taken = self._gather()
        return taken

    def _gather(self) -> int:
        packets = 0
        for rs in self.sockets:
            room = self.chunk_bytes - self.pending_bytes
            if room <= 0:
                break
            blocks = rs.blocks(max_bytes=room)
            if blocks:
                self._pending.append((rs, blocks))
                self.pending_bytes += sum(map(len, blocks))
                packets += sum(block_header(b).num_pkts for b in blocks)
        return packets

    def _take_pending(self) -> list[tuple[RingSocket, list[bytes]]]:
        pending, self._pending, self.pending_bytes = self._pending, [], 0
        return pending

    def batches(
        self, max_segments: int = MAX_SEGMENTS, max_bytes: int = MAX_BYTES
    ) -> list[SegmentColumns]:
        """The segments of the blocks gathered so far, per flow, as batches: each flow's
        segments in capture order, cut at `max_segments` segments or about `max_bytes`."""
        out: list[SegmentColumns] = []
        for rs, blocks in self._take_pending():
            out += self._batches(blocks, rs.ifindex == 0, max_segments, max_bytes)
        return out

    def _batches(
        self, blocks: list[bytes], every_interface: bool, max_segments: int, max_bytes: int
    ) -> list[SegmentColumns]:
        a, ring = frame_columns(blocks)
        self.packets += len(ring)
        if every_interface:  # loopback's sent copies never get here (see bpf.py)
            ring = self._without_forwarded_copies(a, ring)
        start, length = as_ethernet(a, ring)
        frames, others = decode_ethernet_ipv4(a, start, length, ring.ts_ns)  # type: ignore[arg-type]
        buf = a.tobytes() if len(others) else a  # the per-packet decoder slices bytes
        odd: list[tuple[int, Segment]] = []
        decode = self._decode_ethernet
        for i in others.tolist():
            at = int(start[i])
            try:
                seg = decode(buf, at, at + int(length[i]), int(ring.ts_ns[i]))
            except Exception:  # a decoder bug must not stop the capture; counted
                self.skipped["decode_error"] = self.skipped.get("decode_error", 0) + 1
                continue
            if seg is not None:
                odd.append((i, seg))
        self.segments += len(frames) + len(odd)
        node, names = self._node, self._names
        if not odd:
            cut = {"max_segments": max_segments, "max_bytes": max_bytes}
            return list(flow_batches(buf, frames, node=node, source="afpacket", names=names, **cut))
        # Some packets went the slow way: all go segment by segment, so that a flow mixing
        # both kinds keeps its order.
        common = frame_segments(buf, frames, node=node, source="afpacket", names=names)
        ordered = sorted([*zip(frames.index.tolist(), common, strict=True), *odd])
        return list(batch_columns([seg for _, seg in ordered], max_segments, max_bytes))

    def _without_forwarded_copies(self, a: np.ndarray, ring: FrameColumns) -> FrameColumns:
        """`ring` less the sent copies of packets the host forwarded (`ForwardedCopies`,
        packet by packet as `poll` does; the fingerprints are taken all at once)."""
        received, is_forwarded = self._forwarded.received, self._forwarded.is_forwarded
        copies = []
        keys = fingerprints(a, ring.start, ring.end)
        for i, (key, pkttype) in enumerate(zip(keys, ring.pkttype.tolist(), strict=True)):
            if pkttype != PACKET_OUTGOING:
                received(key)
            elif is_forwarded(key):
                copies.append(i)
        if not copies:
            return ring
        self.forwarded_skipped += len(copies)
        keep = np.ones(len(ring), bool)
        keep[copies] = False
        return ring.subset(keep)

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
