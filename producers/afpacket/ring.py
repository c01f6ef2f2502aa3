"""TPACKET_V3 ring layout and block parsing: pure functions over the bytes of one block.

The kernel fills a block with packets, each behind a `tpacket3_hdr` and a `sockaddr_ll`,
then hands the whole block over by setting `TP_STATUS_USER` in its header. `read_block`
turns a copy of a block into `(ts_ns, start, end, pkttype, ifindex)` tuples; `start:end`
is the captured network-layer packet (the socket is SOCK_DGRAM, so there is no link
header). Tuples rather than objects: this runs once per packet.

Layouts (include/uapi/linux/if_packet.h, 64-bit little- or big-endian alike, native order):

    tpacket_block_desc: version u32, offset_to_priv u32, then tpacket_hdr_v1:
        block_status u32 @8, num_pkts u32 @12, offset_to_first_pkt u32 @16, blk_len u32 @20,
        seq_num u64 @24, ts_first_pkt (sec u32, nsec u32) @32, ts_last_pkt @40
    tpacket3_hdr: tp_next_offset u32, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status u32,
        tp_mac u16 @24, tp_net u16 @26, hv1 (rxhash, vlan_tci u32, vlan_tpid u16, pad) @28,
        padding to 48 bytes
    sockaddr_ll @48: family u16, protocol u16 (big-endian), ifindex i32, hatype u16,
        pkttype u8 @58, halen u8, addr[8]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_COPY = 1 << 1  # frame longer than the ring allowed: cut to tp_snaplen
TP_STATUS_LOSING = 1 << 2  # the kernel dropped packets since the last block

# sockaddr_ll.sll_pkttype
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = range(5)

BLOCK_HEADER = struct.Struct("=IIIIIIQIIII")
BLOCK_STATUS_OFFSET = 8
FRAME_HEADER = struct.Struct("=IIIIIIHH20xHHiHBB")  # tpacket3_hdr, then sockaddr_ll
FRAME_HEADER_LEN = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
NS = 1_000_000_000
_NEXT = struct.Struct("=I")  # tp_next_offset
BLOCK_SIZE = 1 << 18  # the ring's blocks (see RingSpec)
# Bytes before each packet that are the ring's own, not the packet's: the 14 right before
# it (after sockaddr_ll, which ends at 68) are padding where a link header may be written.
# SOCK_DGRAM puts the packet at TPACKET_ALIGN(68) + 16 = 96.
LINK_ROOM = 68 + 14
# FRAME_HEADER as a numpy record: the fields `frame_columns` reads, at their offsets.
_FRAME = np.dtype(
    {
        "names": ["sec", "nsec", "snaplen", "mac", "net", "ifindex", "pkttype"],
        "formats": ["=u4", "=u4", "=u4", "=u2", "=u2", "=i4", "u1"],
        "offsets": [4, 8, 12, 24, 26, 52, 58],
        "itemsize": FRAME_HEADER.size,
    }
)


class RingFormatError(ValueError):
    """A block whose headers point outside it: the ring is not what we set up."""


@dataclass(frozen=True, slots=True)
class BlockHeader:
    version: int
    status: int
    num_pkts: int
    first_offset: int
    length: int  # bytes of the block in use, its header included
    seq: int

    @property
    def ready(self) -> bool:
        """True when the kernel has handed the block to user space."""
        return bool(self.status & TP_STATUS_USER)

    @property
    def losing(self) -> bool:
        return bool(self.status & TP_STATUS_LOSING)


def block_header(block: bytes | memoryview) -> BlockHeader:
    version, _priv, status, num, first, length, seq, *_ts = BLOCK_HEADER.unpack_from(block, 0)
    return BlockHeader(version, status, num, first, length, seq)


def read_block(block: bytes | memoryview) -> list[tuple[int, int, int, int, int]]:
    """Every packet in a handed-over block, as (ts_ns, start, end, pkttype, ifindex).

    `block` may be cut to the block's `length`. Raises `RingFormatError` when a header
    points outside the block (never seen from a real kernel; a guard, not a feature).
    """
    size = len(block)
    _v, _p, _status, num, off, *_rest = BLOCK_HEADER.unpack_from(block, 0)
    unpack = FRAME_HEADER.unpack_from
    limit = size - FRAME_HEADER.size
    frames = []
    append = frames.append
    for _ in range(num):
        if off > limit:
            raise RingFormatError(f"packet header at {off} is past the block end ({size})")
        nxt, sec, nsec, snap, _len, _st, mac, net, _fam, _proto, ifindex, _ha, pkttype, _hl = (
            unpack(block, off)
        )
        start = off + net
        end = off + mac + snap
        if end > size or start > end:
            raise RingFormatError(f"packet data {start}:{end} is past the block end ({size})")
        append((sec * NS + nsec, start, end, pkttype, ifindex))
        if not nxt:
            break
        off += nxt
    return frames


@dataclass(frozen=True, slots=True)
class FrameColumns:
    """`read_block` as arrays, one entry per packet: packet i is buf[start[i]:end[i]]."""

    ts_ns: np.ndarray  # int64
    start: np.ndarray  # int64
    end: np.ndarray  # int64
    pkttype: np.ndarray  # uint8
    ifindex: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.start)

    def subset(self, keep: np.ndarray) -> FrameColumns:
        """The packets where `keep` (a mask or indices) says, in order."""
        columns = (self.ts_ns, self.start, self.end, self.pkttype, self.ifindex)
        return FrameColumns(*(column[keep] for column in columns))


def frame_offsets(block: bytes | memoryview) -> list[int]:
    """Where each packet's header starts in a handed-over block: the one walk per packet
    (each header says where the next one is); the rest of a block is read with numpy."""
    size = len(block)
    _v, _p, _status, num, off, *_rest = BLOCK_HEADER.unpack_from(block, 0)
    limit = size - FRAME_HEADER.size
    nxt = _NEXT.unpack_from
    offsets: list[int] = []
    append = offsets.append
    for _ in range(num):
        if off > limit:
            raise RingFormatError(f"packet header at {off} is past the block end ({size})")
        append(off)
        step = nxt(block, off)[0]  # tp_next_offset
        if not step:
            break
        off += step
    return offsets


def frame_columns(blocks: list[bytes]) -> tuple[np.ndarray, FrameColumns]:
    """Every packet of `blocks` (handed over, in ring order) as columns over the blocks
    laid end to end: (a writable uint8 copy of that buffer, the packets). Raises
    `RingFormatError` as `read_block` does, and when a packet leaves no `LINK_ROOM`."""
    a = np.concatenate([np.frombuffer(b, np.uint8) for b in blocks] or [np.zeros(0, np.uint8)])
    sizes = [len(b) for b in blocks]
    bases = [0, *np.cumsum(sizes).tolist()]
    walks = zip(blocks, bases[:-1], strict=True)
    at = np.concatenate(
        [np.array(frame_offsets(b), np.int64) + base for b, base in walks]
        or [np.zeros(0, np.int64)]
    )
    if not len(at):
        none = np.zeros(0, np.int64)
        return a, FrameColumns(none, none, none, none.astype(np.uint8), none.astype(np.int32))
    h = sliding_window_view(a, FRAME_HEADER.size)[at].view(_FRAME)[:, 0]
    if int(h["net"].min()) < LINK_ROOM:
        raise RingFormatError("a packet starts too close to its header for a link header")
    start = at + h["net"]
    end = at + h["mac"] + h["snaplen"]
    # Each packet against the end of its own block.
    ends = np.array(bases[1:], np.int64)
    limit = ends[np.searchsorted(ends, at, side="right")]
    bad = (end > limit) | (start > end)
    if bad.any():
        i = int(np.argmax(bad))
        raise RingFormatError(f"packet data {start[i]}:{end[i]} is past the block end ({limit[i]})")
    ts_ns = h["sec"].astype(np.int64) * NS + h["nsec"]
    return a, FrameColumns(ts_ns, start, end, h["pkttype"].copy(), h["ifindex"].copy())


@dataclass(frozen=True, slots=True)
class RingSpec:
    """Size of the receive ring; packed as `struct tpacket_req3` for PACKET_RX_RING.

    The kernel hands a block over when it is full or `retire_ms` after its first packet,
    so a ring holds `block_nr * retire_ms` of a slow stream however big its blocks: many
    small blocks ride out a longer stall of the reader than few big ones of the same
    bytes (16 MiB: 0.8 s in 1 MiB blocks, 3.2 s in 256 KiB blocks, below ~40k packets/s
    of small packets). `RingSpec.of_mib(n)` sizes a ring that way."""

    block_size: int = BLOCK_SIZE  # a multiple of the page size; a 64 KiB GSO frame fits
    block_nr: int = 64
    frame_size: int = 2048  # V3 frames have variable length; only checked for alignment
    retire_ms: int = 50  # a block not full after this long is handed over anyway

    def __post_init__(self) -> None:
        if self.block_size < 1 << 16 or self.block_size & (self.block_size - 1):
            raise ValueError("ring block size must be a power of two of at least 64 KiB")
        if self.block_nr < 2:
            raise ValueError("the ring needs at least two blocks")

    @classmethod
    def of_mib(cls, mib: int) -> RingSpec:
        """A ring of `mib` MiB (at least 512 KiB) in blocks of the default size."""
        return cls(block_nr=max(2, (mib << 20) // BLOCK_SIZE))

    @property
    def size(self) -> int:
        return self.block_size * self.block_nr

    def pack(self) -> bytes:
        frame_nr = self.size // self.frame_size
        return struct.pack(
            "=7I", self.block_size, self.block_nr, self.frame_size, frame_nr, self.retire_ms, 0, 0
        )
