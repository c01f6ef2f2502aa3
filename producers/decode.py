"""Link-layer, IP and TCP/UDP decoding of captured frames into `Segment` records.

`make_decoder(linktype, ...)` returns one function, `decode(buf, off, end, ts_ns)`, that
decodes the frame `buf[off:end]` and returns a `Segment`, or None after counting the
reason it was skipped in the `skipped` dict. It never raises on malformed bytes: every
read is bounds-checked against `end` before it happens.

The code is written for speed rather than beauty: offsets into the capture buffer
instead of slices, one precompiled `struct` call per header, cached address strings, and
one closure per link type so a packet costs three or four Python calls plus the record.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from schemas.records import Segment, record_maker

# Link-layer header types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_12 = 12  # DLT_RAW on most BSDs, seen in old files
LINKTYPE_RAW_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})  # 802.1Q, 802.1ad, old QinQ

# BSD/Linux/macOS values of AF_INET6 as they appear in NULL/LOOP headers.
AF_INET = 2
AF_INET6 = frozenset({10, 24, 28, 30})

# IPv6 extension headers we walk over: hop-by-hop, routing, destination options,
# mobility, HIP, shim6 (all "(len + 1) * 8" long); fragment (44) and AH (51) apart.
IPV6_EXT_GENERIC = frozenset({0, 43, 60, 135, 139, 140})
IPV6_MAX_EXT = 16

MAX_CACHE = 1 << 16

_IP4 = struct.Struct("!BxH2xHxB2x4s4s")  # ver/ihl, total length, frag, proto, src, dst
_IP6 = struct.Struct("!BxxxHB")  # version/class, payload length, next header
_TCP = struct.Struct("!HHIIBB")  # ports, seq, ack, data offset/ns, flags
_UDP = struct.Struct("!HHH")  # ports, length
_U16 = struct.Struct("!H")

Decoder = Callable[[bytes, int, int, int], "Segment | None"]
Skip = Callable[[str], None]  # counts a skipped frame's reason
# Builds a link layer's decoder from the IPv4 and IPv6 decoders beneath it.
LinkLayer = Callable[[Decoder, Decoder, Skip], Decoder]


# Builds a Segment from its fields in order, slot by slot: as fast as decoding a packet.
make_segment = record_maker(Segment)


def make_decoder(
    linktype: int,
    skipped: dict[str, int],
    *,
    node: str = "",
    source: str = "pcap",
    addr_cache: dict[bytes, str] | None = None,
) -> Decoder:
    """Build `decode(buf, off, end, ts_ns) -> Segment | None` for one link type.

    `skipped` is updated in place (reason -> count) for every frame that gives no
    segment. `addr_cache` maps packed addresses to their text form and may be shared
    between decoders (pcapng files with several interfaces).
    """
    cache: dict[bytes, str] = {} if addr_cache is None else addr_cache

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    transport = _transport(skip, node, source)
    ip4 = _ip4(transport, skip, cache)
    ip6 = _ip6(transport, skip, cache)
    link = _LINK_LAYERS.get(linktype, _unsupported)
    return link(ip4, ip6, skip)


def _transport(skip: Skip, node: str, source: str) -> Callable[..., Segment | None]:
    seg = make_segment
    tcp_unpack = _TCP.unpack_from
    udp_unpack = _UDP.unpack_from

    def transport(buf, off, ip_end, proto, src, dst, ts):
        """TCP/UDP header at `off`; the IP datagram ends at `ip_end`."""
        if proto == 6:
            if off + 20 > ip_end:
                skip("bad_header")
                return None
            sport, dport, sq, ak, doff, fl = tcp_unpack(buf, off)
            data = off + ((doff >> 4) << 2)
            if data < off + 20 or data > ip_end:
                skip("bad_header")
                return None
            return seg(
                ts,
                src,
                sport,
                dst,
                dport,
                sq,
                ak,
                ((doff & 0x0F) << 8) | fl,
                buf[data:ip_end],
                node,
                source,
                "tcp",
            )
        if proto == 17:
            if off + 8 > ip_end:
                skip("bad_header")
                return None
            sport, dport, ulen = udp_unpack(buf, off)
            if ulen >= 8 and off + ulen <= ip_end:
                ip_end = off + ulen
            return seg(
                ts, src, sport, dst, dport, 0, 0, 0, buf[off + 8 : ip_end], node, source, "udp"
            )
        skip("not_tcp_udp")
        return None

    return transport


def _remember(cache: dict[bytes, str], raw: bytes, family: int) -> str:
    """Format an address once; the hot path is the `cache.get` beside each call."""
    if len(cache) >= MAX_CACHE:
        cache.clear()
    name = cache[raw] = socket.inet_ntop(family, raw)
    return name


def _ip4(transport: Callable[..., Segment | None], skip: Skip, cache: dict[bytes, str]) -> Decoder:
    ip4_unpack = _IP4.unpack_from
    af4 = socket.AF_INET

    def ip4(buf, off, end, ts):
        if off + 20 > end:
            skip("truncated_packet")
            return None
        vi, tot, frag, proto, s, d = ip4_unpack(buf, off)
        hl = (vi & 0x0F) << 2
        if vi >> 4 != 4 or hl < 20:
            skip("bad_header")
            return None
        if tot == 0:  # TSO/GSO frame captured before segmentation: length left at 0
            ip_end = end
        elif tot < hl:
            skip("bad_header")
            return None
        else:
            ip_end = off + tot
            if ip_end > end:
                skip("truncated_packet")
                return None
        if frag & 0x3FFF:  # more-fragments flag or a fragment offset
            skip("ip_fragment")
            return None
        if off + hl > ip_end:
            skip("bad_header")
            return None
        src = cache.get(s) or _remember(cache, s, af4)
        dst = cache.get(d) or _remember(cache, d, af4)
        return transport(buf, off + hl, ip_end, proto, src, dst, ts)

    return ip4


def _ip6(transport: Callable[..., Segment | None], skip: Skip, cache: dict[bytes, str]) -> Decoder:
    ip6_unpack = _IP6.unpack_from
    u16 = _U16.unpack_from
    af6 = socket.AF_INET6
    ext_generic = IPV6_EXT_GENERIC

    def ip6(buf, off, end, ts):
        if off + 40 > end:
            skip("truncated_packet")
            return None
        vc, plen, nh = ip6_unpack(buf, off)
        if vc >> 4 != 6:
            skip("bad_header")
            return None
        if plen == 0:  # jumbogram or TSO/GSO: use what was captured
            ip_end = end
        else:
            ip_end = off + 40 + plen
            if ip_end > end:
                skip("truncated_packet")
                return None
        s = buf[off + 8 : off + 24]
        d = buf[off + 24 : off + 40]
        p = off + 40
        n = 0
        while nh != 6 and nh != 17:
            n += 1
            if n > IPV6_MAX_EXT:
                skip("bad_header")
                return None
            if nh in ext_generic:
                if p + 8 > ip_end:
                    skip("bad_header")
                    return None
                nh = buf[p]
                p += (buf[p + 1] + 1) << 3
            elif nh == 44:  # fragment header
                if p + 8 > ip_end:
                    skip("bad_header")
                    return None
                if u16(buf, p + 2)[0] & 0xFFF9:  # offset or more-fragments set
                    skip("ip_fragment")
                    return None
                nh = buf[p]  # an atomic fragment: just a header to walk over
                p += 8
            elif nh == 51:  # authentication header
                if p + 8 > ip_end:
                    skip("bad_header")
                    return None
                nh = buf[p]
                p += (buf[p + 1] + 2) << 2
            else:
                skip("not_tcp_udp")
                return None
        if p > ip_end:
            skip("bad_header")
            return None
        src = cache.get(s) or _remember(cache, s, af6)
        dst = cache.get(d) or _remember(cache, d, af6)
        return transport(buf, p, ip_end, nh, src, dst, ts)

    return ip6


def _by_ethertype(ip4: Decoder, ip6: Decoder, skip: Skip) -> Callable[..., Segment | None]:
    vlan_tpids = VLAN_TPIDS

    def by_ethertype(buf, off, end, ts, etype):
        """Network layer at `off` with the given EtherType, VLAN tags allowed."""
        while etype in vlan_tpids:
            if off + 4 > end:
                skip("truncated_packet")
                return None
            etype = (buf[off + 2] << 8) | buf[off + 3]
            off += 4
        if etype == ETH_IPV4:
            return ip4(buf, off, end, ts)
        if etype == ETH_IPV6:
            return ip6(buf, off, end, ts)
        skip("not_ip")
        return None

    return by_ethertype


def _ethernet(ip4: Decoder, ip6: Decoder, skip: Skip) -> Decoder:
    by_ethertype = _by_ethertype(ip4, ip6, skip)

    def ethernet(buf, off, end, ts):
        if off + 14 > end:
            skip("truncated_packet")
            return None
        etype = (buf[off + 12] << 8) | buf[off + 13]
        if etype == ETH_IPV4:
            return ip4(buf, off + 14, end, ts)
        if etype == ETH_IPV6:
            return ip6(buf, off + 14, end, ts)
        return by_ethertype(buf, off + 14, end, ts, etype)

    return ethernet


def _cooked(size: int, at: int) -> LinkLayer:
    """Linux cooked captures (SLL, SLL2): a `size`-byte header, the EtherType at byte `at`."""

    def link(ip4: Decoder, ip6: Decoder, skip: Skip) -> Decoder:
        by_ethertype = _by_ethertype(ip4, ip6, skip)

        def cooked(buf, off, end, ts):
            if off + size > end:
                skip("truncated_packet")
                return None
            return by_ethertype(buf, off + size, end, ts, (buf[off + at] << 8) | buf[off + at + 1])

        return cooked

    return link


def _raw(ip4: Decoder, ip6: Decoder, skip: Skip) -> Decoder:
    def raw(buf, off, end, ts):
        if off >= end:
            skip("truncated_packet")
            return None
        v = buf[off] >> 4
        if v == 4:
            return ip4(buf, off, end, ts)
        if v == 6:
            return ip6(buf, off, end, ts)
        skip("not_ip")
        return None

    return raw


def _null(ip4: Decoder, ip6: Decoder, skip: Skip) -> Decoder:
    def null(buf, off, end, ts):
        # The address family is a 32-bit integer in the byte order of the machine that
        # wrote it (NULL) or in network order (LOOP, though some writers get that wrong):
        # the family sits either in the first or the last byte.
        if off + 4 > end:
            skip("truncated_packet")
            return None
        b0, b3 = buf[off], buf[off + 3]
        fam = b0 if b0 and not b3 else b3
        if fam == AF_INET:
            return ip4(buf, off + 4, end, ts)
        if fam in AF_INET6:
            return ip6(buf, off + 4, end, ts)
        skip("not_ip")
        return None

    return null


def _unsupported(ip4: Decoder, ip6: Decoder, skip: Skip) -> Decoder:
    def unsupported(buf, off, end, ts):
        skip("unsupported_linktype")

    return unsupported


_LINK_LAYERS: dict[int, LinkLayer] = {
    LINKTYPE_ETHERNET: _ethernet,
    LINKTYPE_RAW: _raw,
    LINKTYPE_RAW_12: _raw,
    LINKTYPE_RAW_14: _raw,
    LINKTYPE_IPV4: lambda ip4, ip6, skip: ip4,
    LINKTYPE_IPV6: lambda ip4, ip6, skip: ip6,
    LINKTYPE_NULL: _null,
    LINKTYPE_LOOP: _null,
    LINKTYPE_LINUX_SLL: _cooked(16, 14),
    LINKTYPE_LINUX_SLL2: _cooked(20, 0),
}
