"""Read pcap and pcapng capture files (optionally gzip-compressed) into `Segment`s.

    stats = ReadStats()
    for seg in read_segments("capture.pcapng", node="node-1", stats=stats):
        ...
    stats.packets, stats.segments, stats.skipped  # {"not_tcp_udp": 3, ...}

Formats: classic pcap in both byte orders with microsecond, nanosecond and "modified"
(Kuznetsov) headers; pcapng with any number of sections (either byte order) and
interfaces (each with its own link type, `if_tsresol` and `if_tsoffset`), reading
Enhanced, Simple and obsolete Packet blocks and skipping every other block. Link types
are those of `producers.decode`.

Errors: `read_segments` opens the file and checks its header before it returns, so a
missing, unreadable or non-capture file raises `CaptureError` right away. After that the
iterator never raises on bad content: a record cut short at the end of the file, a block
whose length makes no sense and every frame that is not TCP/UDP over IP is counted in
`stats.skipped` (reason -> count). `stats.packets == stats.segments + sum(skipped)`.
Only an I/O error while reading (or corrupt gzip data) raises `CaptureError` midway.
"""

from __future__ import annotations

import gzip
import mmap
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from producers.batcher import batch_columns
from producers.decode import LINKTYPE_ETHERNET, make_decoder
from schemas.errors import WiretideError
from schemas.records import Segment
from schemas.segment_wire import SegmentColumns, SegmentMessage, encode_columns

if TYPE_CHECKING:
    import numpy as np

    from producers.columnar import ChunkBatcher

__all__ = ["CaptureError", "ReadStats", "read_batches", "read_segments"]

CHUNK = 1 << 20  # bytes read at a time
BATCH_CHUNK = 4 << 20  # bytes `read_batches` decodes at a time (~6k packets of HTTP)
MAX_SEGMENTS = 1024  # per batch (message) from `read_batches`
MAX_BYTES = 1 << 20
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
MAX_RECORD = 1 << 26  # a record or block longer than this is corrupt, not a packet

PCAP_MAGICS = {
    # magic as read little-endian -> (byte order, ns resolution, record header length)
    0xA1B2C3D4: ("<", False, 16),
    0xD4C3B2A1: (">", False, 16),
    0xA1B23C4D: ("<", True, 16),
    0x4D3CB2A1: (">", True, 16),
    0xA1B2CD34: ("<", False, 24),  # Alexey Kuznetsov's "modified" pcap
    0x34CDB2A1: (">", False, 24),
}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
PCAPNG_IDB = 1
PCAPNG_OPB = 2
PCAPNG_SPB = 3
PCAPNG_EPB = 6
IDB_OPT_TSRESOL = 9
IDB_OPT_TSOFFSET = 14

NS = 1_000_000_000

# A link type's frame decoder: (buf, start, end, ts_ns) → a segment, or None.
_Decode = Callable[[bytes, int, int, int], "Segment | None"]


class CaptureError(WiretideError):
    """A capture file that cannot be read; the message is one line saying why and what to do."""


@dataclass
class ReadStats:
    """Counts for one or more `read_segments` runs; updated while iterating."""

    packets: int = 0  # packet records read (each one became a segment or was skipped)
    segments: int = 0  # segments yielded
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    bytes_read: int = 0  # of the file as stored (compressed if gzip): for progress bars


def read_segments(
    path: str | os.PathLike[str], *, node: str = "", stats: ReadStats | None = None
) -> Iterator[Segment]:
    """Open a pcap/pcapng file (plain or gzip) and iterate over its TCP/UDP segments.

    Raises `CaptureError` at once when the file is missing, unreadable or not a capture;
    after that only an I/O error can raise (also `CaptureError`).
    """
    if stats is None:
        stats = ReadStats()
    src, head, name, pcap = _open(path, stats)
    if pcap is None:
        return _read_pcapng(src, head, name, node, stats)
    if pcap[3] & 0xFFFF == LINKTYPE_ETHERNET:  # what tcpdump writes: a chunk at a time
        return _pcap_segments(src, head, node, stats, *pcap[:3])
    return _read_pcap(src, head, name, node, stats, *pcap)


def read_batches(
    path: str | os.PathLike[str],
    *,
    node: str = "",
    stats: ReadStats | None = None,
    max_segments: int = MAX_SEGMENTS,
    max_bytes: int = MAX_BYTES,
) -> Iterator[SegmentMessage]:
    """The segments of `read_segments`, grouped per flow into batches and encoded, ready
    to publish (`SegmentPublisher.publish_message`): each flow's segments in capture order
    across its batches, a batch cut at `max_segments` segments or about `max_bytes`
    bytes. Fails like `read_segments`.

    Classic pcap of Ethernet frames (what tcpdump writes) is read a chunk at a time and
    decoded with numpy (`producers.columnar`); other captures segment by segment.
    """
    if stats is None:
        stats = ReadStats()
    src, head, name, pcap = _open(path, stats)
    if pcap is not None and pcap[3] & 0xFFFF == LINKTYPE_ETHERNET:
        return _pcap_batches(src, head, node, stats, *pcap[:3], max_segments, max_bytes)
    if pcap is None:
        segments = _read_pcapng(src, head, name, node, stats)
    else:
        segments = _read_pcap(src, head, name, node, stats, *pcap)
    return _messages(batch_columns(segments, max_segments, max_bytes))


def _messages(batches: Iterator[SegmentColumns]) -> Iterator[SegmentMessage]:
    for c in batches:
        yield SegmentMessage(c.flow_id, c.count, encode_columns(c))


# How a classic pcap file is laid out: (byte order, ns resolution, record header length,
# link type); None for pcapng.
_PcapLayout = tuple[str, bool, int, int]


def _open(
    path: str | os.PathLike[str], stats: ReadStats
) -> tuple[_Source, bytes, str, _PcapLayout | None]:
    """(the open file, its first bytes, its name, its pcap layout or None for pcapng);
    raises `CaptureError` when it is not a capture it can read."""
    name = os.fspath(path)
    src = _Source.open(name, stats=stats)
    base = src.base
    try:
        head = src.read_at_least(b"", 24)
        if len(head) >= 4 and head[:2] == b"\x1f\x8b":
            src.close()
            stats.bytes_read = base
            src = _Source.open(name, gzipped=True, stats=stats)
            head = src.read_at_least(b"", 24)
            what = "gzip-compressed, but the data inside is not a pcap or pcapng file"
        else:
            what = ""
        magic = int.from_bytes(head[:4], "little") if len(head) >= 4 else -1
        if magic in PCAP_MAGICS:
            endian, nsec, rec_len = PCAP_MAGICS[magic]
            if len(head) < 24:
                raise CaptureError(
                    f"{name}: pcap file header is cut short ({len(head)} of 24 bytes);"
                    " the capture is incomplete, write it again"
                )
            network = struct.unpack_from(endian + "I", head, 20)[0]
            return src, head, name, (endian, nsec, rec_len, network)
        if magic == PCAPNG_SHB:
            if len(head) < 12:
                raise CaptureError(
                    f"{name}: pcapng section header is cut short ({len(head)} bytes);"
                    " the capture is incomplete, write it again"
                )
            if _bom(head, 8) is None:
                raise CaptureError(
                    f"{name}: pcapng section header has no valid byte-order magic;"
                    " the file is corrupt, capture it again"
                )
            return src, head, name, None
        raise CaptureError(f"{name}: not a pcap or pcapng file ({what or _describe(head)})")
    except BaseException:
        src.close()
        raise


def _describe(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd-compressed; decompress it first with zstd -d"
    if head.startswith(b"BZh"):
        return "bzip2-compressed; decompress it first with bunzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz-compressed; decompress it first with unxz"
    if len(head) < 4:
        return f"only {len(head)} bytes long"
    first = head[:4].hex(" ")
    return f"starts with {first}; write captures with tcpdump -w or tshark -w"


def _bom(buf: bytes, off: int) -> str | None:
    """Byte order of a pcapng section from its byte-order magic at `off`."""
    if off + 4 > len(buf):
        return None
    v = int.from_bytes(buf[off : off + 4], "big")
    if v == PCAPNG_BOM:
        return ">"
    if v == 0x4D3C2B1A:
        return "<"
    return None


class _Source:
    """A file read in large chunks; turns every read failure into `CaptureError`."""

    def __init__(self, name: str, raw: BinaryIO, f: BinaryIO, stats: ReadStats | None) -> None:
        self.name = name
        self._raw = raw
        self._f = f
        self._stats = stats
        self.base = stats.bytes_read if stats is not None else 0
        self._gzip = isinstance(f, gzip.GzipFile)
        # GzipFile.read(n) drops what it decompressed when the stream turns out to be cut
        # short within the same call; read1 returns it first and raises on the next call.
        self._read = f.read1 if self._gzip else f.read

    @classmethod
    def open(cls, name: str, gzipped: bool = False, stats: ReadStats | None = None) -> _Source:
        try:
            raw = open(name, "rb")  # closed by close()
        except FileNotFoundError:
            raise CaptureError(f"{name}: no such file; check the path") from None
        except IsADirectoryError:
            raise CaptureError(f"{name}: is a directory, not a capture file") from None
        except PermissionError:
            raise CaptureError(
                f"{name}: permission denied; make the file readable or run as its owner"
            ) from None
        except OSError as e:
            raise CaptureError(f"{name}: cannot open ({e.strerror or e})") from None
        except ValueError as e:  # e.g. a NUL byte in the path
            raise CaptureError(f"{name!r}: not a usable file name ({e})") from None
        f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw  # type: ignore[assignment]
        return cls(name, raw, f, stats)

    def read(self, n: int) -> bytes:
        try:
            data = self._read(n)
        except EOFError:  # gzip stream cut short: what was there has been returned
            return b""
        except (OSError, zlib.error) as e:
            if self._gzip:
                raise CaptureError(
                    f"{self.name}: corrupt gzip data ({e}); decompress it with gunzip to see"
                    " how much is readable"
                ) from None
            raise CaptureError(f"{self.name}: read failed ({e})") from None
        stats = self._stats
        if stats is not None:
            if not self._gzip:
                stats.bytes_read += len(data)
            else:
                try:
                    stats.bytes_read = self.base + self._raw.tell()
                except OSError:  # not seekable (a pipe): no position to report
                    pass
        return data

    def read_at_least(self, buf: bytes, need: int) -> bytes:
        """`buf` extended with reads until it is `need` bytes long or the file ends."""
        if len(buf) >= need:
            return buf
        parts = [buf]
        have = len(buf)
        while have < need:
            more = self.read(max(CHUNK, need - have))
            if not more:
                break
            parts.append(more)
            have += len(more)
        return b"".join(parts)

    def map(self) -> mmap.mmap | None:
        """The whole file mapped read-only, when it is a plain regular file (not gzip, not
        a pipe); None otherwise. Reading it then copies nothing."""
        if self._gzip:
            return None
        try:
            fd = self._raw.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        if hasattr(mapped, "madvise"):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        return mapped

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            self._raw.close()


def _count(stats: ReadStats, reason: str) -> None:
    stats.packets += 1
    stats.skipped[reason] = stats.skipped.get(reason, 0) + 1


def _refill(src: _Source, buf: bytes, pos: int, need: int, stats: ReadStats) -> bytes | None:
    """What is left of `buf` from `pos`, read on to `need` bytes; None when the file ends
    first (a record cut short there is counted)."""
    buf = src.read_at_least(buf[pos:], need)
    if len(buf) < need:
        if buf:
            _count(stats, "truncated_record")
        return None
    return buf


def _decode_failed(stats: ReadStats) -> None:
    """A decoder bug must not end the read; tests look for it in `skipped`."""
    stats.skipped["decode_error"] = stats.skipped.get("decode_error", 0) + 1


def _read_pcap(
    src: _Source,
    buf: bytes,
    name: str,
    node: str,
    stats: ReadStats,
    endian: str,
    nsec: bool,
    rec_len: int,
    network: int,
) -> Iterator[Segment]:
    # The link-type field carries FCS information in its upper bits.
    decode = make_decoder(network & 0xFFFF, stats.skipped, node=node)
    unpack = struct.Struct(endian + "III").unpack_from
    frac_ns = 1 if nsec else 1000
    pos = 24
    n = len(buf)
    try:
        while True:
            if pos + rec_len > n:
                more = _refill(src, buf, pos, rec_len, stats)
                if more is None:
                    return
                buf, pos, n = more, 0, len(more)
            sec, frac, incl = unpack(buf, pos)
            start = pos + rec_len
            end = start + incl
            if end > n:
                if incl > MAX_RECORD:
                    # A garbage length: there is no way to find the next record.
                    _count(stats, "bad_record")
                    return
                more = _refill(src, buf, pos, rec_len + incl, stats)
                if more is None:
                    return
                buf, pos, n = more, 0, len(more)
                start, end = rec_len, rec_len + incl
            stats.packets += 1
            try:  # inline: the per-packet path takes no extra call
                seg = decode(buf, start, end, sec * NS + frac * frac_ns)
            except Exception:
                seg = _decode_failed(stats)
            pos = end
            if seg is not None:
                stats.segments += 1
                yield seg
    finally:
        src.close()


def _chunk_batcher(
    node: str, stats: ReadStats, endian: str, nsec: bool, rec_len: int, **cut: int
) -> ChunkBatcher:
    from producers.columnar import ChunkBatcher

    return ChunkBatcher(
        make_decoder(LINKTYPE_ETHERNET, stats.skipped, node=node),
        endian=endian,
        frac_ns=1 if nsec else 1000,
        rec_len=rec_len,
        node=node,
        max_segments=cut.get("max_segments", MAX_SEGMENTS),
        max_bytes=cut.get("max_bytes", MAX_BYTES),
    )


def _pcap_batches(
    src: _Source,
    buf: bytes,
    node: str,
    stats: ReadStats,
    endian: str,
    nsec: bool,
    rec_len: int,
    max_segments: int,
    max_bytes: int,
) -> Iterator[SegmentMessage]:
    """`read_batches` of a classic pcap of Ethernet frames: `_read_pcap`, a chunk at a
    time. Only the record walk is a Python loop per packet."""
    batcher = _chunk_batcher(
        node, stats, endian, nsec, rec_len, max_segments=max_segments, max_bytes=max_bytes
    )
    for window, starts in _windows(src, buf, endian, rec_len, stats):
        yield from batcher.chunk(window, starts, stats)


def _pcap_segments(
    src: _Source, buf: bytes, node: str, stats: ReadStats, endian: str, nsec: bool, rec_len: int
) -> Iterator[Segment]:
    """`_read_pcap` of Ethernet frames, decoded a chunk at a time (the same segments in
    the same order; each built as it is asked for)."""
    batcher = _chunk_batcher(node, stats, endian, nsec, rec_len)
    for window, starts in _windows(src, buf, endian, rec_len, stats):
        yield from batcher.segments(window, starts, stats)


def _windows(
    src: _Source, buf: bytes, endian: str, rec_len: int, stats: ReadStats
) -> Iterator[tuple[bytes | memoryview, np.ndarray]]:
    """(a stretch of a classic pcap file, where its whole records start) after the file
    header; `buf` holds what was read of the file so far. Counts a record cut short at
    the end and a garbage length, as `_read_pcap` does. Closes `src`."""
    incl_at = struct.Struct(endian + "I").unpack_from
    mapped = src.map()
    if mapped is not None:
        src.close()  # the map keeps its own reference to the file
        yield from _mapped_windows(mapped, src.base, rec_len, incl_at, stats)
        return
    pos, need, eof = 24, BATCH_CHUNK, False
    try:
        while True:
            if len(buf) - pos < need and not eof:
                buf = src.read_at_least(buf[pos:], need)
                pos = 0
                eof = len(buf) < need
            n = len(buf)
            starts, pos = _walk(buf, pos, rec_len, incl_at)
            if len(starts):
                yield buf, starts
            if pos == n and eof:
                return
            need = BATCH_CHUNK
            if pos + rec_len <= n:  # a record that does not fit
                incl = incl_at(buf, pos + 8)[0]
                if incl > MAX_RECORD:  # a garbage length: no way to find the next record
                    _count(stats, "bad_record")
                    return
                need = max(need, rec_len + incl)
            if eof:
                _count(stats, "truncated_record")
                return
    finally:
        src.close()


def _walk(
    buf: bytes, pos: int, rec_len: int, incl_at: Callable[[bytes, int], tuple[int]]
) -> tuple[np.ndarray, int]:
    """(where each whole record from `pos` on starts, where the first record that is not
    whole starts). The one Python loop per packet, so it is as short as it gets: it walks
    from length field to length field (8 bytes into a header) until one is past the end."""
    import numpy as np  # only here: `read_segments` does without it

    fields: list[int] = []
    add = fields.append
    q = pos + 8
    try:
        while True:
            add(q)
            q += incl_at(buf, q)[0] + rec_len
    except struct.error:  # a length field past the end of buf
        pass
    # Record i ends where record i + 1 begins; the last whole one ends within buf.
    n = len(buf)
    whole = len(fields) - 1
    while fields[whole] - 8 > n:
        whole -= 1
    return np.array(fields[:whole], np.int64) - 8, fields[whole] - 8


def _mapped_windows(
    mapped: mmap.mmap,
    base: int,
    rec_len: int,
    incl_at: Callable[[bytes, int], tuple[int]],
    stats: ReadStats,
) -> Iterator[tuple[memoryview, np.ndarray]]:
    """`_windows` of a file mapped into memory: views of it, no copies. `base`: the bytes
    read before this file (`stats.bytes_read` goes on from there)."""
    whole = memoryview(mapped)
    n = len(whole)
    pos = 24
    dropped = 0  # pages before this are let go
    try:
        while pos < n:
            window = whole[pos : pos + BATCH_CHUNK]
            starts, taken = _walk(window, 0, rec_len, incl_at)
            if not len(starts):  # the next record is longer than a window, or cut short
                if pos + rec_len > n:
                    _count(stats, "truncated_record")
                    return
                incl = incl_at(whole, pos + 8)[0]
                if incl > MAX_RECORD:  # a garbage length: no way to find the next record
                    _count(stats, "bad_record")
                    return
                if pos + rec_len + incl > n:
                    _count(stats, "truncated_record")
                    return
                window = whole[pos : pos + rec_len + incl]
                starts, taken = _walk(window, 0, rec_len, incl_at)
            yield window, starts
            pos += taken
            stats.bytes_read = base + pos
            done = pos - pos % mmap.PAGESIZE
            if done > dropped and _DONTNEED is not None:  # read: out of our memory (RSS)
                mapped.madvise(_DONTNEED, dropped, done - dropped)
                dropped = done
    finally:
        stats.bytes_read = base + n
        window = whole = None  # type: ignore[assignment]
        try:
            mapped.close()
        except BufferError:  # a view is still alive somewhere: the GC closes it
            pass


# What an Interface Description Block says, as (decode, mul, div, offset_ns, snaplen):
# a timestamp in the interface's units converts to epoch ns as ts * mul // div + offset_ns.
_Interface = tuple[_Decode, int, int, int, int]


def _interface(
    buf: bytes, pos: int, end: int, e: str, node: str, stats: ReadStats, addrs: dict
) -> _Interface | None:
    """Parse an Interface Description Block at `pos` (block ends at `end`)."""
    if pos + 20 > end:
        return None
    linktype, snaplen = struct.unpack_from(e + "H2xI", buf, pos + 8)
    units = 1_000_000  # default if_tsresol: microseconds
    offset_s = 0
    p, opt_end = pos + 16, end - 4
    while p + 4 <= opt_end:
        code, olen = struct.unpack_from(e + "HH", buf, p)
        p += 4
        if code == 0 or p + olen > opt_end:
            break
        if code == IDB_OPT_TSRESOL and olen >= 1:
            r = buf[p]
            units = 2 ** (r & 0x7F) if r & 0x80 else 10**r
        elif code == IDB_OPT_TSOFFSET and olen >= 8:
            offset_s = struct.unpack_from(e + "q", buf, p)[0]
        p += (olen + 3) & ~3
    if NS % units == 0:
        mul, div = NS // units, 1
    else:
        mul, div = NS, units
    decode = make_decoder(linktype, stats.skipped, node=node, addr_cache=addrs)
    return (decode, mul, div, offset_s * NS, snaplen)


def _unpackers(e: str) -> tuple[Callable, Callable]:
    """Block header (type, length) and packet block fields, in byte order `e`."""
    return struct.Struct(e + "II").unpack_from, struct.Struct(e + "IIIII").unpack_from


def _simple_packet(
    buf: bytes, pos: int, blen: int, e: str, ifaces: list, ts: int, stats: ReadStats
) -> Segment | None:
    """A Simple Packet Block: no interface id (always 0) and no timestamp (`ts`, the last
    one seen, stands in)."""
    stats.packets += 1
    iface = ifaces[0] if ifaces else None
    if blen < 16 or iface is None:
        stats.skipped["bad_record"] = stats.skipped.get("bad_record", 0) + 1
        return None
    cap = min(struct.unpack_from(e + "I", buf, pos + 8)[0], blen - 16)
    if iface[4]:
        cap = min(cap, iface[4])
    try:
        return iface[0](buf, pos + 12, pos + 12 + cap, ts)
    except Exception:
        return _decode_failed(stats)


def _read_pcapng(
    src: _Source, buf: bytes, name: str, node: str, stats: ReadStats
) -> Iterator[Segment]:
    skipped = stats.skipped
    addrs: dict[bytes, str] = {}
    ifaces: list[_Interface | None] = []
    e = "<"  # the first block is a section header, whose type reads alike either way
    hdr, epb = _unpackers(e)
    last_ts = pos = 0
    n = len(buf)
    try:
        while True:
            if pos + 12 > n:
                more = _refill(src, buf, pos, 12, stats)
                if more is None:
                    return
                buf, pos, n = more, 0, len(more)
            btype, blen = hdr(buf, pos)
            if btype == PCAPNG_SHB:  # a new section: its own byte order and interfaces
                bom = _bom(buf, pos + 8)
                if bom is None:
                    _count(stats, "bad_record")
                    return
                e = bom
                hdr, epb = _unpackers(e)
                blen = hdr(buf, pos)[1]
                ifaces = []
            if blen < 12 or blen & 3 or blen > MAX_RECORD:
                _count(stats, "bad_record")  # nothing tells where the next block starts
                return
            end = pos + blen
            if end > n:
                more = _refill(src, buf, pos, blen, stats)
                if more is None:
                    return
                buf, pos, n, end = more, 0, len(more), blen
            if btype == PCAPNG_EPB or btype == PCAPNG_OPB:
                stats.packets += 1
                if blen < 32:
                    skipped["bad_record"] = skipped.get("bad_record", 0) + 1
                    pos = end
                    continue
                ifid, th, tl, cap, _ = epb(buf, pos + 8)
                if btype == PCAPNG_OPB:  # 16-bit interface id, then 16-bit drop count
                    ifid = ifid & 0xFFFF if e == "<" else ifid >> 16
                start = pos + 28
                iface = ifaces[ifid] if ifid < len(ifaces) else None
                if iface is None or start + cap > end - 4:
                    skipped["bad_record"] = skipped.get("bad_record", 0) + 1
                    pos = end
                    continue
                decode, mul, div, offset_ns, _ = iface
                last_ts = ((th << 32 | tl) * mul) // div + offset_ns
                try:  # inline: the per-packet path takes no extra call
                    seg = decode(buf, start, start + cap, last_ts)
                except Exception:
                    seg = _decode_failed(stats)
            elif btype == PCAPNG_SPB:
                seg = _simple_packet(buf, pos, blen, e, ifaces, last_ts, stats)
            else:
                seg = None
                if btype == PCAPNG_IDB:
                    # A malformed one still takes its number; its packets count as bad records.
                    ifaces.append(_interface(buf, pos, end, e, node, stats, addrs))
                # else: statistics, name resolution, secrets, custom blocks: skipped
            pos = end
            if seg is not None:
                stats.segments += 1
                yield seg
    finally:
        src.close()
