"""Resolve a process's socket fd to its TCP 4-tuple from /proc (the eBPF side's fallback)."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SocketTuple:
    """Local and remote address of a TCP socket, as seen by its own process."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int


def _proc_hex_ip(text: str) -> str:
    raw = bytes.fromhex(text)
    # /proc/net/tcp prints each 32-bit word in host (little-endian) byte order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return tuple_ip(words)


def tuple_ip(raw: bytes) -> str:
    """An address from 4 or 16 bytes; IPv4-mapped IPv6 becomes plain IPv4."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    addr = ipaddress.IPv6Address(raw)
    mapped = addr.ipv4_mapped
    return str(mapped) if mapped is not None else str(addr)


def parse_proc_net_tcp(text: str) -> dict[int, SocketTuple]:
    """inode -> 4-tuple for each socket line of /proc/<pid>/net/tcp or tcp6."""
    out: dict[int, SocketTuple] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        local, remote, inode = parts[1], parts[2], int(parts[9])
        if not inode:
            continue
        lip, lport = local.split(":")
        rip, rport = remote.split(":")
        out[inode] = SocketTuple(
            _proc_hex_ip(lip), int(lport, 16), _proc_hex_ip(rip), int(rport, 16)
        )
    return out


def socket_inode(pid: int, fd: int) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    if not link.startswith("socket:["):
        return None
    return int(link[8:-1])


def resolve_fd(pid: int, fd: int) -> SocketTuple | None:
    """The TCP 4-tuple of `fd` in process `pid` (in its own network namespace), or None
    when the fd is closed, not a socket, or not a connected TCP socket."""
    inode = socket_inode(pid, fd)
    if inode is None:
        return None
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                table = parse_proc_net_tcp(f.read())
        except OSError:
            continue
        found = table.get(inode)
        if found is not None and found.remote_port:
            return found
    return None


def tuple_from_event(
    family: int, sport: int, dport: int, saddr: bytes, daddr: bytes
) -> SocketTuple:
    """A 4-tuple from the BPF side (addresses as 16 bytes, IPv4 mapped)."""
    del family  # both families arrive as 16-byte (IPv4-mapped) addresses
    return SocketTuple(tuple_ip(saddr), sport, tuple_ip(daddr), dport)


__all__ = ["SocketTuple", "parse_proc_net_tcp", "resolve_fd", "tuple_from_event", "tuple_ip"]
