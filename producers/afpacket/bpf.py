"""Classic BPF socket filters for raw IP packets (the ring socket is SOCK_DGRAM, so the
filter sees the packet from its IP header on, whatever the interface's link type).

`capture_filter(ports, hosts, exclude_ports)` gives the program for "(tcp or udp)
[and (port P or ...)] [and (host H or ...)] [and not (port X or ...)]": compiled by
`tcpdump -dd` when tcpdump is installed, else by the small compiler below, which knows
only that shape. Both accept IPv4 and IPv6 (IPv6 with
TCP/UDP right after the fixed header, as tcpdump's own `port` does); ports are checked
on unfragmented packets only, again as tcpdump does.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass

from schemas.errors import WiretideError

Instruction = tuple[int, int, int, int]  # code, jt, jf, k: struct sock_filter
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

SNAPLEN = 262144
LINKTYPE_RAW = 101
MAX_VALUES = 32  # ports or hosts: keeps every jump of the fallback program in range

# Opcodes (linux/filter.h) used by the fallback compiler.
LDB_ABS, LDH_ABS, LD_ABS, LDH_IND = 0x30, 0x28, 0x20, 0x48
LDX_MSH = 0xB1  # X = 4 * (P[k] & 0x0f): the IPv4 header length
AND_K, JEQ_K, JSET_K, RET_K = 0x54, 0x15, 0x45, 0x06

_TCPDUMP_LINE = re.compile(r"\{\s*(0x[0-9a-f]+),\s*(\d+),\s*(\d+),\s*(0x[0-9a-f]+)\s*\}")


class FilterError(WiretideError, ValueError):
    """A --port or --host value that cannot become a filter; the message says which."""


@dataclass(frozen=True, slots=True)
class CaptureFilter:
    expression: str  # what tcpdump would read
    program: tuple[Instruction, ...]
    compiler: str  # "tcpdump" | "builtin"


def filter_expression(
    ports: list[int], hosts: list[str], exclude_ports: list[int] | tuple[int, ...] = ()
) -> str:
    parts = ["(tcp or udp)"]
    if ports:
        parts.append("(" + " or ".join(f"port {p}" for p in ports) + ")")
    if hosts:
        parts.append("(" + " or ".join(f"host {h}" for h in hosts) + ")")
    if exclude_ports:
        parts.append("not (" + " or ".join(f"port {p}" for p in exclude_ports) + ")")
    return " and ".join(parts)


def check_values(ports: list[int], hosts: list[str]) -> list[Address]:
    for port in ports:
        if not 0 < port < 65536:
            raise FilterError(f"--port {port}: a port is a number from 1 to 65535")
    addrs = []
    for host in hosts:
        try:
            addrs.append(ipaddress.ip_address(host))
        except ValueError:
            raise FilterError(f"--host {host!r}: give an IPv4 or IPv6 address") from None
    if len(ports) > MAX_VALUES or len(hosts) > MAX_VALUES:
        raise FilterError(f"at most {MAX_VALUES} --port and {MAX_VALUES} --host values")
    return addrs


def capture_filter(
    ports: list[int],
    hosts: list[str],
    exclude_ports: list[int] | tuple[int, ...] = (),
    use_tcpdump: bool = True,
) -> CaptureFilter:
    """The filter for what the user asked (`ports`, `hosts`) minus `exclude_ports` (the
    pipeline's own Kafka traffic, which would otherwise feed back into the capture)."""
    addrs = check_values(ports, hosts)
    check_values(list(exclude_ports), [])
    expr = filter_expression(ports, [str(a) for a in addrs], exclude_ports)
    if use_tcpdump and shutil.which("tcpdump"):
        program = compile_with_tcpdump(expr)
        if program is not None:
            return CaptureFilter(expr, program, "tcpdump")
    return CaptureFilter(expr, compile_builtin(ports, addrs, list(exclude_ports)), "builtin")


def compile_with_tcpdump(expression: str) -> tuple[Instruction, ...] | None:
    """`tcpdump -dd` over an empty raw-IP capture file, so no interface or privilege is
    needed; None when tcpdump fails (then the built-in compiler is used)."""
    header = struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW)
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(header)
        f.flush()
        os.chmod(f.name, 0o644)  # tcpdump may read it after dropping privileges
        try:
            out = subprocess.run(
                ["tcpdump", "-dd", "-r", f.name, expression],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None
    if out.returncode != 0:
        return None
    lines = _TCPDUMP_LINE.findall(out.stdout)
    program = tuple((int(c, 16), int(jt), int(jf), int(k, 16)) for c, jt, jf, k in lines)
    return program or None


class _Assembler:
    """Instructions with symbolic forward jumps (label names; None = the next one)."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | None, str | None, int]] = []
        self.labels: dict[str, int] = {}
        self._n = 0

    def new_label(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def op(self, code: int, k: int = 0, jt: str | None = None, jf: str | None = None) -> None:
        self.code.append((code, jt, jf, k))

    def assemble(self) -> tuple[Instruction, ...]:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.code):
            offsets = []
            for target in (jt, jf):
                off = 0 if target is None else self.labels[target] - i - 1
                if not 0 <= off <= 255:
                    raise FilterError("too many --port/--host values for one filter")
                offsets.append(off)
            out.append((code, offsets[0], offsets[1], k))
        return tuple(out)


def compile_builtin(
    ports: list[int], hosts: list[Address], exclude_ports: list[int] | None = None
) -> tuple[Instruction, ...]:
    exclude = exclude_ports or []
    a = _Assembler()
    a.op(LDB_ABS, 0)
    a.op(AND_K, 0xF0)
    a.op(JEQ_K, 0x40, jt="v4")
    a.op(JEQ_K, 0x60, jt="v6", jf="reject")
    for family, proto_at, addr_at in ((4, 9, (12, 16)), (6, 6, (8, 24))):
        a.label(f"v{family}")
        a.op(LDB_ABS, proto_at)
        a.op(JEQ_K, 6, jt=f"hosts{family}")
        a.op(JEQ_K, 17, jt=f"hosts{family}", jf="reject")
        a.label(f"hosts{family}")
        mine = [h for h in hosts if h.version == family]
        if hosts and not mine:
            a.op(RET_K, 0)
        for host in mine:
            words = struct.unpack(f"!{len(host.packed) // 4}I", host.packed)
            for at in addr_at:
                miss = a.new_label("miss")
                for w, word in enumerate(words):
                    last = w == len(words) - 1
                    a.op(LD_ABS, at + 4 * w)
                    a.op(JEQ_K, word, jt=f"ports{family}" if last else None, jf=miss)
                a.label(miss)
        if mine:
            a.op(RET_K, 0)
        a.label(f"ports{family}")
        if not ports and not exclude:
            a.op(RET_K, SNAPLEN)
            continue
        if family == 4:
            a.op(LDH_ABS, 6)
            a.op(JSET_K, 0x1FFF, jt="reject")  # a fragment: no transport header to read
            a.op(LDX_MSH, 0)
        for side in (0, 2) if exclude else ():
            _load_port(a, family, side)
            for port in exclude:
                a.op(JEQ_K, port, jt="reject")
        if not ports:
            a.op(RET_K, SNAPLEN)
            continue
        for side in (0, 2):
            _load_port(a, family, side)
            for i, port in enumerate(ports):
                last = side == 2 and i == len(ports) - 1
                a.op(JEQ_K, port, jt="accept", jf="reject" if last else None)
    a.label("accept")
    a.op(RET_K, SNAPLEN)
    a.label("reject")
    a.op(RET_K, 0)
    return a.assemble()


# Linux ancillary loads (SKF_AD_OFF + ...): facts about the packet, not its bytes.
LD_PKTTYPE = 0xFFFFF000 + 4
LD_IFINDEX = 0xFFFFF000 + 8
PACKET_OUTGOING = 4
ACCEPT_ALL: tuple[Instruction, ...] = ((RET_K, 0, 0, SNAPLEN),)


def skip_loopback_sends(
    program: tuple[Instruction, ...], loopback_ifindex: int, every_interface: bool
) -> tuple[Instruction, ...]:
    """`program` behind a guard that drops the sent copy of loopback packets in the
    kernel (each is also received): half the ring traffic on `lo`. On a socket for one
    interface (`lo`) it checks the packet type; on every interface also the ifindex."""
    guard: tuple[Instruction, ...] = (
        (LD_ABS, 0, 0, LD_PKTTYPE),
        (JEQ_K, 0, 1, PACKET_OUTGOING),
        (RET_K, 0, 0, 0),
    )
    if every_interface:
        guard = ((LD_ABS, 0, 0, LD_IFINDEX), (JEQ_K, 0, 3, loopback_ifindex), *guard)
    return guard + program


def _load_port(a: _Assembler, family: int, side: int) -> None:
    """Source (side 0) or destination (side 2) port into A; IPv4 needs X = header length."""
    if family == 4:
        a.op(LDH_IND, side)
    else:
        a.op(LDH_ABS, 40 + side)


def pack_program(program: tuple[Instruction, ...]) -> tuple[bytes, ctypes.Array]:
    """`struct sock_fprog` for SO_ATTACH_FILTER, and the array it points to (keep it
    alive until setsockopt returns)."""
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    return struct.pack("HP", len(program), ctypes.addressof(buf)), buf
