"""The pod-IP BPF socket filter on a real AF_PACKET socket over loopback traffic."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

import pytest

from producers.ebpf.ip_filter import IpFilter
from tests.conftest import free_ports

if os.geteuid() != 0:
    pytest.skip("AF_PACKET and BPF need root (CI runs these as root)", allow_module_level=True)

ETH_P_ALL = 0x0003
A, B = "127.0.0.2", "127.0.0.3"


UDP_PORT, TCP_PORT, V6_PORT, END_PORT = free_ports(4)  # two runs must not see each other's
TCP_FLAGS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04}


def _parse(frame: bytes) -> tuple[str, str, int, int, int, int, int] | None:
    """(src, dst, proto, sport, dport, TCP flags or -1, L4 payload size) of an Ethernet
    frame; None when it is not IP."""
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0800:
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        proto = frame[23]
        src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
        l4, l4_len = 14 + ihl, total - ihl
    elif ethertype == 0x86DD:
        proto = frame[20]
        src = socket.inet_ntop(socket.AF_INET6, frame[22:38])
        dst = socket.inet_ntop(socket.AF_INET6, frame[38:54])
        l4, l4_len = 54, struct.unpack_from("!H", frame, 18)[0]
    else:
        return None
    sport, dport = struct.unpack_from("!HH", frame, l4)
    if proto == 6:
        doff = (frame[l4 + 12] >> 4) * 4
        return src, dst, proto, sport, dport, frame[l4 + 13], l4_len - doff
    return src, dst, proto, sport, dport, -1, l4_len - 8


@pytest.fixture
def packet_socket() -> Iterator[socket.socket]:
    # Protocol 0: the socket receives nothing until bound, so the filter is attached
    # before the first packet (else loopback traffic of others fills its buffer first).
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.settimeout(10)
    yield sock
    sock.close()


def _listen(sock: socket.socket) -> None:
    sock.bind(("lo", ETH_P_ALL))


@pytest.fixture
def ip_filter() -> Iterator[IpFilter]:
    f = IpFilter()
    yield f
    f.close()


def _traffic(ip: str) -> None:
    """A UDP datagram, and a TCP connection carrying one request, from `ip` to itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind((ip, 0))
        u.sendto(b"udp-" + ip.encode(), (ip, UDP_PORT))
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((ip, TCP_PORT))
        server.listen()
        with socket.create_connection((ip, TCP_PORT), source_address=(ip, 0)) as c:
            peer, _ = server.accept()
            c.sendall(b"hello " + ip.encode())
            assert peer.recv(100)
            peer.close()


def _collect(sock: socket.socket, end_marker_ip: str) -> list[tuple]:
    """Packets with our ports until the end marker (a UDP datagram from a targeted IP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind((end_marker_ip, 0))
        u.sendto(b"end", (end_marker_ip, END_PORT))
    seen = []
    ours = {UDP_PORT, TCP_PORT, V6_PORT, END_PORT}
    while True:
        frame, addr = sock.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:  # loopback shows each packet twice
            continue
        pkt = _parse(frame)
        if pkt is None or not ours & {pkt[3], pkt[4]}:
            continue
        if pkt[4] == END_PORT:
            return seen
        seen.append(pkt)


def test_only_targeted_ips_pass_and_update_switches_live(packet_socket, ip_filter) -> None:
    ip_filter.update_ips({A})
    ip_filter.attach(packet_socket)
    _listen(packet_socket)
    _traffic(A)
    _traffic(B)
    seen = _collect(packet_socket, A)
    assert {p[0] for p in seen} | {p[1] for p in seen} == {A}
    udp = [p for p in seen if p[2] == 17]
    tcp = [p for p in seen if p[2] == 6]
    assert udp and all(p[4] == UDP_PORT for p in udp)
    # the handshake's SYNs, the data segment and the FINs pass; bare ACKs do not
    assert any(p[5] & TCP_FLAGS["SYN"] for p in tcp)
    assert any(p[5] & TCP_FLAGS["FIN"] for p in tcp)
    assert any(p[6] > 0 for p in tcp)
    assert all(p[6] > 0 or p[5] & 0x07 for p in tcp)

    ip_filter.update_ips({B})
    assert ip_filter.ips == {B}
    _traffic(A)
    _traffic(B)
    seen = _collect(packet_socket, B)
    assert {p[0] for p in seen} | {p[1] for p in seen} == {B}
    assert any(p[2] == 6 and p[6] > 0 for p in seen)
    counts = ip_filter.counts()
    assert counts["kept"] > 0 and counts["dropped"] > 0


def test_ipv6_targets(packet_socket, ip_filter) -> None:
    ip_filter.update_ips({"::1", A})
    ip_filter.attach(packet_socket)
    _listen(packet_socket)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
        u.sendto(b"v6", ("::1", V6_PORT))
    seen = _collect(packet_socket, A)
    assert [(p[0], p[4]) for p in seen if p[2] == 17] == [("::1", V6_PORT)]


def test_bad_ip_is_a_value_error(ip_filter) -> None:
    with pytest.raises(ValueError):
        ip_filter.update_ips({"10.0.0.300"})
