"""A BPF socket filter for AF_PACKET sockets: keep only traffic of targeted pod IPs.

Kept: TCP segments that carry payload or SYN/FIN/RST, UDP datagrams, and IP fragments
after the first (their ports are unknown) — when the source or destination address is in
the `targets` map. Everything else (bare ACKs, other IPs, non-IP frames) is dropped in the
kernel before it is copied to the socket. The map is changed live by `update_ips`.

Addresses are offsets from the network header (bpf_skb_load_bytes_relative), so the
filter works on SOCK_RAW and SOCK_DGRAM packet sockets alike. IPv4 is keyed as an
IPv4-mapped IPv6 address (::ffff:a.b.c.d), so one 16-byte key type serves both families.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from producers.ebpf.errors import BpfPermissionError
from producers.ebpf.support import compile_bpf, load_func, require_ebpf

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27
MAX_TARGETS = 65536

_PROGRAM = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>

struct addr_t { u8 a[16]; };
BPF_HASH(targets, struct addr_t, u8, MAX_TARGETS);
BPF_ARRAY(counts, u64, 2);  // 0: kept, 1: dropped (IP packets only)

static __always_inline int verdict(struct __sk_buff *skb, int keep) {
    int k = keep ? 0 : 1;
    u64 *c = counts.lookup(&k);
    if (c) __sync_fetch_and_add(c, 1);
    return keep ? skb->len : 0;
}

static __always_inline int targeted(struct addr_t *src, struct addr_t *dst) {
    return targets.lookup(src) != 0 || targets.lookup(dst) != 0;
}

// 1 when a TCP header at `off` (from the network header) shows payload or SYN/FIN/RST.
static __always_inline int tcp_worth_keeping(struct __sk_buff *skb, u32 off, u32 l4_len) {
    u8 hdr[14];
    if (bpf_skb_load_bytes_relative(skb, off, hdr, sizeof(hdr), BPF_HDR_START_NET) < 0)
        return 1;  // truncated header: let user space decide
    u32 doff = (hdr[12] >> 4) * 4;
    u8 flags = hdr[13];
    if (flags & 0x07) return 1;  // FIN, SYN, RST
    return l4_len > doff;
}

int ip_filter(struct __sk_buff *skb) {
    struct addr_t src = {}, dst = {};
    u32 proto = bpf_ntohs(skb->protocol);
    if (proto == ETH_P_IP) {
        u8 ip[20];
        if (bpf_skb_load_bytes_relative(skb, 0, ip, sizeof(ip), BPF_HDR_START_NET) < 0)
            return 0;
        src.a[10] = 0xff; src.a[11] = 0xff;
        dst.a[10] = 0xff; dst.a[11] = 0xff;
        __builtin_memcpy(&src.a[12], &ip[12], 4);
        __builtin_memcpy(&dst.a[12], &ip[16], 4);
        if (!targeted(&src, &dst)) return verdict(skb, 0);
        u32 ihl = (ip[0] & 0x0f) * 4;
        u32 total = ((u32)ip[2] << 8) | ip[3];
        u32 frag_off = (((u32)ip[6] & 0x1f) << 8) | ip[7];
        if (frag_off != 0) return verdict(skb, 1);
        if (ip[9] == IPPROTO_UDP) return verdict(skb, 1);
        if (ip[9] != IPPROTO_TCP) return verdict(skb, 0);
        if (total < ihl) return verdict(skb, 0);
        return verdict(skb, tcp_worth_keeping(skb, ihl, total - ihl));
    }
    if (proto == ETH_P_IPV6) {
        u8 ip6[40];
        if (bpf_skb_load_bytes_relative(skb, 0, ip6, sizeof(ip6), BPF_HDR_START_NET) < 0)
            return 0;
        __builtin_memcpy(src.a, &ip6[8], 16);
        __builtin_memcpy(dst.a, &ip6[24], 16);
        if (!targeted(&src, &dst)) return verdict(skb, 0);
        u32 payload = ((u32)ip6[4] << 8) | ip6[5];
        u8 next = ip6[6];
        if (next == IPPROTO_UDP) return verdict(skb, 1);
        if (next != IPPROTO_TCP) return verdict(skb, 1);  // extension headers: keep
        return verdict(skb, tcp_worth_keeping(skb, 40, payload));
    }
    return 0;
}
"""


def address_key(ip: str) -> bytes:
    """16-byte map key: IPv6 as is, IPv4 as ::ffff:a.b.c.d. Raises ValueError if bad."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv4Address):
        return b"\x00" * 10 + b"\xff\xff" + addr.packed
    return addr.packed


class IpFilter:
    """Kernel-side filter for AF_PACKET sockets over a live set of target IPs."""

    def __init__(self) -> None:
        bcc = require_ebpf(tracing=False)
        self._bpf: Any = compile_bpf(
            "the pod-IP socket filter", _PROGRAM, [f"-DMAX_TARGETS={MAX_TARGETS}"]
        )
        self._fn = load_func(
            self._bpf, "the pod-IP socket filter", "ip_filter", bcc.BPF.SOCKET_FILTER
        )
        self._targets = self._bpf[b"targets"]
        self._key_type = self._targets.Key
        self._one = self._targets.Leaf(1)
        self._ips: dict[bytes, str] = {}
        self._sockets: list[socket.socket] = []

    def attach(self, sock: socket.socket) -> None:
        """Attach to a packet socket (SO_ATTACH_BPF); packets already queued still arrive."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, self._fn.fd)
        except PermissionError:
            raise BpfPermissionError("the pod-IP socket filter onto the socket") from None
        self._sockets.append(sock)

    def update_ips(self, ips: Iterable[str]) -> None:
        """Make `ips` the target set: add new addresses, delete gone ones (live)."""
        wanted = {address_key(ip): ip for ip in ips}
        if len(wanted) > MAX_TARGETS:
            raise ValueError(f"at most {MAX_TARGETS} target IPs, got {len(wanted)}")
        for key in set(self._ips) - set(wanted):
            del self._targets[self._key(key)]
        for key in set(wanted) - set(self._ips):
            self._targets[self._key(key)] = self._one
        self._ips = wanted

    @property
    def ips(self) -> set[str]:
        return set(self._ips.values())

    def counts(self) -> dict[str, int]:
        """IP packets kept and dropped so far, all attached sockets together."""
        table = self._bpf[b"counts"]
        return {"kept": table[ctypes.c_int(0)].value, "dropped": table[ctypes.c_int(1)].value}

    def _key(self, raw: bytes) -> Any:
        key = self._key_type()
        ctypes.memmove(ctypes.byref(key), raw, 16)
        return key

    def close(self) -> None:
        for sock in self._sockets:
            if sock.fileno() >= 0:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0)
                except OSError:
                    pass
        self._sockets.clear()
        self._bpf.cleanup()

    def __enter__(self) -> IpFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
