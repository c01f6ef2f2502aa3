"""The I/O shell around `ring.py`: one AF_PACKET socket with a TPACKET_V3 receive ring.

    with RingSocket("eth0", spec=RingSpec(), program=capture_filter([80], []).program) as rs:
        for block in rs.blocks():           # copies of the blocks the kernel handed over
            for ts_ns, start, end, pkttype, ifindex in read_block(block): ...
        rs.kernel_stats()                   # counters since the last call (then reset)

The socket is SOCK_DGRAM (packets start at the IP header on every link type) and bound
with protocol 0 until the filter and ring are in place, so nothing unfiltered gets in.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import struct
from dataclasses import dataclass

from producers.afpacket.bpf import ACCEPT_ALL, Instruction, pack_program, skip_loopback_sends
from producers.afpacket.netns import in_netns
from producers.afpacket.ring import (
    BLOCK_STATUS_OFFSET,
    TP_STATUS_KERNEL,
    TP_STATUS_USER,
    TPACKET_V3,
    RingSpec,
)
from schemas.errors import WiretideError

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003
_STATS = struct.Struct("=III")  # struct tpacket_stats_v3
_STATUS = struct.Struct("=I")
_libc = ctypes.CDLL(None, use_errno=True)

NO_PRIVILEGE = (
    "live capture needs root or the CAP_NET_RAW capability: run it with sudo, or grant "
    "the capability once with sudo setcap cap_net_raw,cap_net_admin=eip {python}"
)


class LiveCaptureError(WiretideError):
    """A capture socket that cannot be opened; the message says why and what to do."""


@dataclass
class KernelStats:
    packets: int = 0  # packets that reached the socket (drops included)
    drops: int = 0  # dropped because the ring was full
    freeze_q: int = 0  # times the ring was full (every block still in user space)

    def add(self, other: KernelStats) -> None:
        self.packets += other.packets
        self.drops += other.drops
        self.freeze_q += other.freeze_q


def _bind(sock: socket.socket, ifindex: int) -> None:
    """bind() with a raw sockaddr_ll: Python's own AF_PACKET bind cannot say ifindex 0."""
    addr = struct.pack("=HHi8x", socket.AF_PACKET, socket.htons(ETH_P_ALL), ifindex)
    buf = ctypes.create_string_buffer(addr, 20)
    if _libc.bind(sock.fileno(), buf, 20) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _attach(sock: socket.socket, program: tuple[Instruction, ...]) -> None:
    fprog, keep = pack_program(program)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    del keep  # the kernel has copied the program


class RingSocket:
    def __init__(
        self,
        interface: str | None = None,
        *,
        netns: str | None = None,
        spec: RingSpec | None = None,
        program: tuple[Instruction, ...] | None = None,
    ) -> None:
        """Capture on `interface` (None: every interface) of namespace `netns`."""
        self.interface = interface
        self.netns = netns
        self.spec = spec or RingSpec()
        self.totals = KernelStats()
        self._next = 0
        where = f"interface {interface!r}" if interface else "all interfaces"
        if netns:
            where += f" of network namespace {netns!r}"
        self.where = where
        with in_netns(netns):
            self.ifindex = self._ifindex(interface)
            self.loopback_ifindex = socket.if_nametoindex("lo")
            self._sock = self._open(program)
        try:
            self._map = mmap.mmap(self._sock.fileno(), self.spec.size)
            _bind(self._sock, self.ifindex)
        except BaseException:
            self._sock.close()
            raise
        self.fd = self._sock.fileno()
        self.closed = False

    def _ifindex(self, interface: str | None) -> int:
        if not interface:
            return 0
        try:
            return socket.if_nametoindex(interface)
        except OSError:
            raise LiveCaptureError(
                f"no network interface named {interface!r}"
                + (f" in namespace {self.netns!r}" if self.netns else "")
                + "; list them with ip link"
            ) from None

    def _open(self, program: tuple[Instruction, ...] | None) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        except PermissionError:
            raise LiveCaptureError(
                NO_PRIVILEGE.format(python=os.path.realpath(os.sys.executable))
            ) from None
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            _attach(sock, self._guarded(program or ACCEPT_ALL))
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, self.spec.pack())
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENOMEM:
                raise LiveCaptureError(
                    f"cannot allocate a {self.spec.size >> 20} MiB capture ring; "
                    "use a smaller --buffer"
                ) from None
            raise LiveCaptureError(f"cannot set up the capture ring ({exc.strerror})") from None
        return sock

    def _guarded(self, program: tuple[Instruction, ...]) -> tuple[Instruction, ...]:
        if self.ifindex in (0, self.loopback_ifindex):
            return skip_loopback_sends(program, self.loopback_ifindex, self.ifindex == 0)
        return program

    def attach_filter(self, program: tuple[Instruction, ...]) -> None:
        """Replace the filter; the packets already in the ring are given back unread."""
        _attach(self._sock, self._guarded(program))
        self.blocks()

    def ready(self) -> bool:
        """True when the next block is in user space."""
        off = self._next * self.spec.block_size + BLOCK_STATUS_OFFSET
        return bool(_STATUS.unpack_from(self._map, off)[0] & TP_STATUS_USER)

    def blocks(self, max_bytes: int | None = None) -> list[bytes]:
        """Copy out every block the kernel has handed over (or, given `max_bytes`, blocks
        until that many bytes are out), in ring order, and give each back at once (a copy
        of the bytes in use is cheaper than holding the block)."""
        out = []
        taken = 0
        spec, mm = self.spec, self._map
        size, nr = spec.block_size, spec.block_nr
        unpack = _STATUS.unpack_from
        while True:
            base = self._next * size
            if not unpack(mm, base + BLOCK_STATUS_OFFSET)[0] & TP_STATUS_USER:
                return out
            length = min(max(unpack(mm, base + 20)[0], 48), size)
            out.append(mm[base : base + length])
            _STATUS.pack_into(mm, base + BLOCK_STATUS_OFFSET, TP_STATUS_KERNEL)
            self._next = (self._next + 1) % nr
            taken += length
            if len(out) >= nr or (max_bytes is not None and taken >= max_bytes):
                return out

    def kernel_stats(self) -> KernelStats:
        """Counters since the last call (the kernel resets them on read); also added to
        `totals`."""
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        now = KernelStats(*_STATS.unpack(raw))
        self.totals.add(now)
        return now

    def close(self) -> None:
        if not self.closed:
            self.kernel_stats()
            self.closed = True
            self._map.close()
            self._sock.close()

    def __enter__(self) -> RingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
