"""Sans-IO parts of TLS capture: chunks → segments, /proc/net/tcp parsing, ELF symbols
and RET offsets of a real Go binary. These run without root."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from producers.tls.chunks import EGRESS, HOLD_NS, INGRESS, SegmentMaker, TlsChunk, TlsClose
from producers.tls.elf import (
    GO_TLS_READ,
    GO_TLS_WRITE,
    function_symbols,
    go_tls_functions,
    go_version,
    ret_offsets,
)
from producers.tls.sockets import SocketTuple, parse_proc_net_tcp, resolve_fd, tuple_from_event
from schemas.records import FIN
from streams.reassembly.events import DataReceived, StreamClosed
from streams.reassembly.tcp import TcpReassembler

CLIENT = SocketTuple("10.0.0.1", 40000, "10.0.0.2", 8443)  # as the client process sees it
SERVER = SocketTuple("10.0.0.2", 8443, "10.0.0.1", 40000)  # as the server process sees it


def _no_proc(pid: int, fd: int) -> SocketTuple | None:
    return None


def test_both_ends_traced_give_one_ordered_stream_per_direction() -> None:
    maker = SegmentMaker(_no_proc, node="n1")
    chunks = [
        TlsChunk(1, 100, 5, EGRESS, 0, b"GET / HTTP/1.1\r\n", CLIENT),
        TlsChunk(2, 200, 7, INGRESS, 0, b"GET / HTTP/1.1\r\n", SERVER),
        TlsChunk(3, 100, 5, EGRESS, 16, b"Host: x\r\n\r\n", CLIENT),
        TlsChunk(4, 200, 7, INGRESS, 16, b"Host: x\r\n\r\n", SERVER),
        TlsChunk(5, 200, 7, EGRESS, 0, b"HTTP/1.1 204 No Content\r\n\r\n", SERVER),
        TlsChunk(6, 100, 5, INGRESS, 0, b"HTTP/1.1 204 No Content\r\n\r\n", CLIENT),
    ]
    segments = [maker.chunk(c) for c in chunks]
    segments += maker.close(TlsClose(7, 100, 5, 27, 27))  # the 4-tuple comes from the cache
    assert all(s is not None and s.source == "tls" and s.node == "n1" for s in segments)
    r = TcpReassembler()
    events = [ev for s in segments if s is not None for ev in r.feed(s)]
    data = [ev for ev in events if isinstance(ev, DataReceived)]
    assert (
        b"".join(d.data for d in data if d.direction == 0) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert b"".join(d.data for d in data if d.direction == 1) == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert (data[0].flow.client_ip, data[0].flow.client_port) == ("10.0.0.1", 40000)
    assert [ev.reason for ev in events if isinstance(ev, StreamClosed)] == ["fin"]
    assert r.stats.retransmits == 3  # the second copy of each chunk


def test_lost_chunk_becomes_a_gap_and_fins_carry_the_counts() -> None:
    maker = SegmentMaker(_no_proc)
    first = maker.chunk(TlsChunk(1, 1, 3, EGRESS, 0, b"abc", CLIENT))
    later = maker.chunk(TlsChunk(2, 1, 3, EGRESS, 10, b"xyz", CLIENT))
    assert first is not None and later is not None
    assert (later.seq, later.src_port, later.dst_port) == (10, 40000, 8443)
    fins = maker.close(TlsClose(3, 1, 3, 13, 0))
    assert [(s.flags, s.seq, s.src_port) for s in fins] == [(FIN, 13, 40000), (FIN, 0, 8443)]
    # closed: the fd's 4-tuple is forgotten, and without one a chunk is dropped
    assert maker.chunk(TlsChunk(4, 1, 3, EGRESS, 0, b"new", None)) is None
    assert maker.stats.unresolved == 1 and maker.stats.closes == 1


def test_process_exit_closes_its_sockets_at_the_counts_seen() -> None:
    maker = SegmentMaker(_no_proc)
    maker.chunk(TlsChunk(1, 7, 3, EGRESS, 0, b"hello", CLIENT))
    maker.chunk(TlsChunk(2, 7, 3, INGRESS, 0, b"hi!", CLIENT))
    maker.chunk(TlsChunk(3, 8, 3, EGRESS, 0, b"other process", SERVER))
    fins = maker.exit(7, 4)
    assert [(s.flags, s.seq, s.src_port) for s in fins] == [(FIN, 5, 40000), (FIN, 3, 8443)]
    assert maker.exit(7, 5) == []


def test_sequence_wraps_modulo_2_32() -> None:
    maker = SegmentMaker(_no_proc)
    seg = maker.chunk(TlsChunk(1, 1, 3, INGRESS, (1 << 32) + 5, b"z", CLIENT))
    assert seg is not None and seg.seq == 5 and (seg.src_ip, seg.dst_ip) == ("10.0.0.2", "10.0.0.1")


def test_resolver_is_asked_once_per_socket() -> None:
    asked = []

    def resolve(pid: int, fd: int) -> SocketTuple | None:
        asked.append((pid, fd))
        return CLIENT

    maker = SegmentMaker(resolve)
    for i in range(3):
        assert maker.chunk(TlsChunk(i, 9, 4, EGRESS, i, b"a", None)) is not None
    assert asked == [(9, 4)]


def test_proc_net_tcp_lines() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
        "  timeout inode\n"
        "   0: 0100007F:5514 0200007F:9C40 01 00000000:00000000 00:00000000 00000000     0"
        "        0 4242 1 0000000000000000 20 4 30 10 -1\n"
    )
    assert parse_proc_net_tcp(text) == {4242: SocketTuple("127.0.0.1", 0x5514, "127.0.0.2", 0x9C40)}
    v6 = (
        "  sl  local_address                         remote_address                        st\n"
        "   0: 00000000000000000000000001000000:0050 0000000000000000FFFF00000100007F:A000 01 "
        "00000000:00000000 00:00000000 00000000 0 0 77 1\n"
    )
    assert parse_proc_net_tcp(v6) == {77: SocketTuple("::1", 80, "127.0.0.1", 0xA000)}


def test_resolve_fd_of_a_real_connection() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 21830))
        server.listen()
        with socket.create_connection(("127.0.0.1", 21830)) as c:
            peer, _ = server.accept()
            with peer:
                got = resolve_fd(os.getpid(), c.fileno())
                assert got == SocketTuple("127.0.0.1", c.getsockname()[1], "127.0.0.1", 21830)
                assert resolve_fd(os.getpid(), server.fileno()) is None  # listening
    assert resolve_fd(os.getpid(), 10_000) is None


def test_tuple_from_event_unmaps_ipv4() -> None:
    v4 = b"\0" * 10 + b"\xff\xff" + bytes([10, 1, 2, 3])
    v6 = socket.inet_pton(socket.AF_INET6, "fd00::7")
    assert tuple_from_event(2, 1, 2, v4, v6) == SocketTuple("10.1.2.3", 1, "fd00::7", 2)


def test_libssl_symbols() -> None:
    lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
    if not os.path.exists(lib):
        pytest.skip("no system libssl.so.3")
    symbols = function_symbols(lib, frozenset({"SSL_write", "SSL_read_ex", "nope"}))
    assert set(symbols) == {"SSL_write", "SSL_read_ex"}
    assert all(s.size > 0 and s.file_offset > 0 for s in symbols.values())


def test_go_binary_functions_and_rets(tmp_path: Path) -> None:
    go = shutil.which("go")
    assert go, "Go toolchain not found"
    out = tmp_path / "tlsgo"
    src = Path(__file__).parent / "tls_go"
    subprocess.run([go, "build", "-o", str(out), "."], cwd=src, check=True)
    st = out.stat()
    functions = go_tls_functions(str(out), (st.st_dev, st.st_ino, st.st_mtime_ns))
    assert set(functions) == {GO_TLS_WRITE, GO_TLS_READ}
    data = out.read_bytes()
    for sym in functions.values():
        rets = ret_offsets(str(out), sym)
        assert rets and all(0 < off < sym.size for off in rets)
        assert all(data[sym.file_offset + off] == 0xC3 for off in rets)
    assert go_tls_functions("/bin/sh", (0, 0, 0)) == {}
    go_env = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout
    minor = int(go_env.strip().removeprefix("go1.").split(".")[0])
    assert go_version(str(out), (st.st_dev, st.st_ino, st.st_mtime_ns)) == (1, minor)
    assert go_version("/bin/sh", (0, 0, 0)) is None


def test_a_write_reported_after_its_close_comes_before_the_fin_on_its_own_socket() -> None:
    """A Go Write's RET can come after another goroutine closed the socket and a new
    connection got the same fd: the close counts the write (reserved at its entry), so its
    FINs wait for it, and the next connection on fd 5 keeps its own numbering."""
    nxt = SocketTuple("10.0.0.1", 40001, "10.0.0.2", 8443)
    request, response = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"
    maker = SegmentMaker(_no_proc)
    segments = [maker.chunk(TlsChunk(2, 1, 5, INGRESS, 0, response, CLIENT))]
    assert maker.close(TlsClose(3, 1, 5, len(request), len(response), CLIENT)) == []
    assert maker.flush(4) == []
    segments.append(maker.chunk(TlsChunk(5, 1, 5, EGRESS, 0, b"GET /b", nxt)))
    segments.append(maker.chunk(TlsChunk(6, 1, 5, EGRESS, 0, request, CLIENT)))  # the late one
    fins = maker.flush(6)
    assert [(s.src_port, s.dst_port, s.seq) for s in fins] == [
        (40000, 8443, len(request)),
        (8443, 40000, len(response)),
    ]
    r = TcpReassembler()
    events = [ev for s in [*segments, *fins] if s is not None for ev in r.feed(s)]
    old = [ev for ev in events if isinstance(ev, DataReceived) and ev.flow.client_port == 40000]
    assert b"".join(d.data for d in old if d.direction == 0) == request
    assert [ev.reason for ev in events if isinstance(ev, StreamClosed)] == ["fin"]
    # the fd's next connection was counted apart: its close needs only its own bytes
    assert len(maker.close(TlsClose(7, 1, 5, 6, 0, nxt))) == 2


def test_a_held_close_is_given_up_after_a_while() -> None:
    maker = SegmentMaker(_no_proc)
    maker.chunk(TlsChunk(1, 1, 5, EGRESS, 0, b"abc", CLIENT))
    assert maker.close(TlsClose(2, 1, 5, 10, 0, CLIENT)) == []  # 7 bytes never reported
    assert maker.flush(3) == []
    assert [s.seq for s in maker.flush(2 + HOLD_NS)] == [10, 0]


def test_a_read_reported_after_its_close_leaves_the_next_connection_on_the_fd_alone() -> None:
    """An OpenSSL read whose fd was closed (and given to a new connection) before the call
    returned arrives marked late with the socket it was pinned to: it lands there, and the
    fd's next connection keeps its socket and its counts."""
    nxt = SocketTuple("10.0.0.1", 40001, "10.0.0.2", 8443)
    maker = SegmentMaker(_no_proc)
    assert maker.close(TlsClose(1, 1, 5, 0, 0, CLIENT)) != []
    maker.chunk(TlsChunk(2, 1, 5, EGRESS, 0, b"GET /b", nxt))
    late = maker.chunk(TlsChunk(3, 1, 5, INGRESS, 0, b"HTTP/1.1 200", CLIENT, late=True))
    after = maker.chunk(TlsChunk(4, 1, 5, EGRESS, 6, b" HTTP/1.1", None))
    assert late is not None and (late.src_port, late.dst_port) == (8443, 40000)
    assert after is not None and (after.src_port, after.dst_port) == (40001, 8443)
    assert [(s.dst_port, s.seq) for s in maker.exit(1, 5)] == [(8443, 15), (40001, 0)]


def test_a_response_read_before_its_request_was_reported_waits_for_it() -> None:
    """Go's net/http writes a request and reads its response in two goroutines: the
    response's Read can return before the request's Write reaches its RET. The read names
    the egress bytes reserved by then, and waits for them, so the request comes first."""
    request, response = b"GET /conn HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"
    maker = SegmentMaker(_no_proc)
    held = TlsChunk(2, 1, 5, INGRESS, 0, response, CLIENT, egress_mark=len(request))
    assert maker.chunk(held) is None and maker.flush(3) == []
    first = maker.chunk(TlsChunk(4, 1, 5, EGRESS, 0, request, CLIENT))
    out = [first, *maker.flush(4)]
    assert [(s.src_port, s.payload) for s in out if s is not None] == [
        (40000, request),
        (8443, response),
    ]
    r = TcpReassembler()
    data = [ev for s in out if s is not None for ev in r.feed(s) if isinstance(ev, DataReceived)]
    assert [(d.direction, d.data) for d in data] == [(0, request), (1, response)]


def test_a_held_read_goes_before_the_fins_and_is_given_up_after_a_while() -> None:
    maker = SegmentMaker(_no_proc)
    maker.chunk(TlsChunk(1, 1, 5, INGRESS, 0, b"HTTP/1.1 200", CLIENT, egress_mark=9))
    assert [(s.seq, s.flags & FIN) for s in maker.close(TlsClose(2, 1, 5, 0, 12, CLIENT))] == [
        (0, 0),
        (0, FIN),
        (12, FIN),
    ]
    # a write that never returns (failed, or stuck) delays its read at most HOLD_NS, once
    maker.chunk(TlsChunk(3, 1, 6, INGRESS, 0, b"abc", CLIENT, egress_mark=4))
    assert maker.flush(4) == []
    assert [s.payload for s in maker.flush(3 + HOLD_NS)] == [b"abc"]
    again = maker.chunk(TlsChunk(5 + HOLD_NS, 1, 6, INGRESS, 3, b"def", CLIENT, egress_mark=4))
    assert again is not None and again.payload == b"def"
