"""TLS plaintext capture with eBPF uprobes, against real HTTPS clients and servers.

Needs root and the host setup of producers/tls/setup.sh (CI runs both). Python's ssl
module (OpenSSL, SSL_read_ex/SSL_write_ex) and Go's crypto/tls are each captured from both
ends, and the segments go through the real reassemble → dissect → redact pipeline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.afpacket import AfPacketCapture
from producers.live import LiveLoop
from producers.publisher import partition_key
from producers.tls import TlsCapture, probe_ebpf
from schemas.records import FIN, ApiCall, Segment
from streams.dissect.registry import default_registry
from streams.pipeline import Pipeline
from streams.redact import RedactionPolicy
from tests.conftest import _free_port_pair

GO_SOURCE = Path(__file__).parent / "tls_go"

if os.geteuid() != 0:
    pytest.skip("TLS capture tests need root (CI runs them as root)", allow_module_level=True)

PY_SERVER = r"""
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = [("Content-Type", "application/json"), ("X-Test", "yes")]
        self.answer(201, b'{"echo": ' + body + b'}', headers)
    def do_GET(self):  # the connection it was asked on, then close it
        out = "peer={}:{} id={}".format(*self.client_address, self.headers["X-Id"]).encode()
        self.answer(200, out, [("Connection", "close")])
    def answer(self, status, out, headers):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
# handshakes run in the handler threads
server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
print("ready", flush=True)
server.serve_forever()
"""

# Two requests on one keep-alive connection; the second body is bigger than one chunk.
PY_CLIENT = r"""
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
conn = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
bodies = [b'{"item": "tea"}', b'{"blob": "' + b"x" * 40000 + b'"}']
for i, body in enumerate(bodies):
    conn.request("POST", f"/orders?id={i}", body=body,
                 headers={"Content-Type": "application/json", "X-Req": f"abc{i}"})
    resp = conn.getresponse()
    resp.read()
    print(resp.status, conn.sock.getsockname()[1], flush=True)
conn.close()
"""


# asyncio's TLS runs OpenSSL over memory BIOs: socket I/O happens outside the SSL calls.
ASYNC_SERVER = r"""
import asyncio, ssl, sys
async def handle(reader, writer):
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        length = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
        body = await reader.readexactly(int(length[0].split(b":")[1]))
        out = b'{"async_echo": ' + body + b"}"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Async: 1\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
        await writer.drain()
        if b"close" in head.lower():
            break
    writer.close()
async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), ssl=ctx)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

ASYNC_CLIENT = r"""
import asyncio, ssl, sys
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]), ssl=ctx)
    for i, conn in enumerate([b"keep-alive", b"close"]):
        body = b'{"n": %d}' % i
        writer.write(b"POST /async/%d HTTP/1.1\r\nHost: a\r\nConnection: %s\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (i, conn, len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
        await reader.readexactly(int(length[0].split(b":")[1]))
    print(writer.get_extra_info("sockname")[1], flush=True)
    writer.close()
    await writer.wait_closed()
asyncio.run(main())
"""


# Node.js links OpenSSL statically and drives it over memory BIOs from libuv.
NODE_CLIENT = r"""
const https = require("https"), fs = require("fs");
const [port, ca, body] = process.argv.slice(-3);
console.log("ready");
process.stdin.once("data", () => {
  const req = https.request({host: "127.0.0.1", port: +port, method: "POST",
      path: "/node?q=1", ca: fs.readFileSync(ca), agent: false,
      headers: {"Content-Type": "application/json", "X-Node": "n1",
                "Content-Length": Buffer.byteLength(body)}}, (res) => {
    let data = "";
    res.on("data", (c) => (data += c));
    res.on("end", () => { console.log(req.socket.localPort); process.exit(0); });
  });
  req.end(body);
});
"""

# Short-lived connections from many threads of one Python process (OpenSSL, socket BIOs):
# fds and SSL objects are reused all the time. N GETs of PY_SERVER's connection echo, PAR
# threads at a time, each on its own connection; prints "ID PORT" per call.
PY_STORM_CLIENT = r"""
import concurrent.futures, http.client, ssl, sys
port, total, par = int(sys.argv[1]), int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context(cafile=sys.argv[2])
def call(i):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    conn.request("GET", "/conn", headers={"X-Id": str(i), "Connection": "close"})
    local = conn.sock.getsockname()[1]
    body = conn.getresponse().read()
    conn.close()
    assert body.endswith(b":%d id=%d" % (local, i)), (i, local, body)
    return "%d %d" % (i, local)
print("ready", flush=True)
sys.stdin.readline()
with concurrent.futures.ThreadPoolExecutor(par) as pool:
    print("\n".join(pool.map(call, range(total))), flush=True)
"""

# A write blocked in the kernel while another thread closes its fd and a new connection
# gets the same number: the server takes the first connection, then serves the second one
# a request, reads the first connection's request (the blocked write ends) and only then
# answers the second.
RACE_SERVER = r"""
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
ctx.num_tickets = 0  # unread tickets would make the client's close a reset, losing data
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the smallest: a write blocks
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(8)
print("ready", flush=True)
def request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.startswith(b"Content-")]
    while len(body) < sum(length):
        body += conn.recv(65536)
first = ctx.wrap_socket(listener.accept()[0], server_side=True)
second = ctx.wrap_socket(listener.accept()[0], server_side=True)
request(second)
request(first)
second.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
second.close()
first.close()
"""

RACE_CLIENT = r"""
import fcntl, os, socket, ssl, struct, sys, termios, threading, time
port = int(sys.argv[1])
ctx = ssl.create_default_context(cafile=sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
raw.connect(("127.0.0.1", port))
first = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
fd, first_port = first.fileno(), first.getsockname()[1]
body = b"x" * 16000  # one TLS record, so one write(2)
writer = threading.Thread(target=first.sendall, args=(
    b"POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),))
writer.start()
while not struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"0000"))[0]:
    time.sleep(0.01)
time.sleep(0.2)
assert writer.is_alive(), "the write did not block"
os.close(fd)
second = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
assert second.fileno() == fd, (second.fileno(), fd)
second.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
writer.join()
first.detach()  # its fd number is the second connection's now
answer = b""
while chunk := second.recv(65536):
    answer += chunk
assert answer.endswith(b"ok"), answer
print(first_port, second.getsockname()[1], flush=True)
second.close()
"""


@pytest.fixture(scope="module", autouse=True)
def ebpf_ready() -> None:
    support = probe_ebpf()
    assert support.tls, "eBPF TLS capture unavailable: " + "; ".join(support.problems)


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    go = shutil.which("go")
    assert go, "Go toolchain not found (needed to build tests/producers/tls_go)"
    out = tmp_path_factory.mktemp("go") / "tlsgo"
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_SOURCE, check=True, env=env)
    return str(out)


def _spawn(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"{argv[0]} did not start: {line!r} {proc.stderr.read()}"
    return proc


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _run_client(
    cap: TlsCapture, client: subprocess.Popen[str], port: int, fins: int
) -> list[Segment]:
    """Let the client go, then poll until it exited and `fins` FINs to or from `port`
    (socket closes in traced processes) arrived."""
    assert client.stdin is not None
    client.stdin.write("go\n")
    client.stdin.flush()
    segments: list[Segment] = []
    deadline = time.monotonic() + 180  # a guard against hanging, not a speed check
    while (
        client.poll() is None
        or sum(1 for s in segments if s.flags & FIN and port in (s.src_port, s.dst_port)) < fins
    ):
        assert time.monotonic() < deadline, f"capture incomplete: {len(segments)} segments"
        assert client.returncode in (None, 0), client.stderr.read() if client.stderr else ""
        segments += cap.poll(0.2)
    assert client.returncode == 0, client.stderr.read() if client.stderr else ""
    return segments


def _calls(segments: list[Segment]) -> list[ApiCall]:
    pipe = Pipeline(default_registry(), RedactionPolicy.default())
    calls = pipe.process(1, segments).calls
    calls += pipe.finish().calls
    return sorted(calls, key=lambda c: c.ts_ns)


def _stream(segments: list[Segment], dst_port: int) -> bytes:
    """Bytes of one direction in sequence order, each offset once (both ends report them)."""
    pieces = {s.seq: s.payload for s in segments if s.dst_port == dst_port and s.payload}
    return b"".join(pieces[k] for k in sorted(pieces))


def test_python_https_plaintext_and_calls(cert, processes) -> None:
    crt, key = cert
    port = _free_port_pair()
    server = _spawn([sys.executable, "-c", PY_SERVER, str(port), crt, key])
    client = _spawn([sys.executable, "-c", PY_CLIENT, str(port), crt])
    processes += [server, client]
    with TlsCapture(pids=[server.pid, client.pid]) as cap:
        files = cap.attached_files
        traced = cap.stats()["processes"]
        segments = _run_client(cap, client, port, fins=2)
        stats = cap.stats()
    assert traced == 2
    assert [f.kind for f in files] == ["openssl"]
    assert {"SSL_read_ex", "SSL_write_ex"} <= set(files[0].functions)
    assert stats["unresolved"] == 0 and stats["ring_full"] == 0 and stats["no_fd"] == 0

    assert client.stdout is not None
    out = client.stdout.read().split()
    client_port = int(out[1])
    assert out[::2] == ["201", "201"]
    assert {s.source for s in segments} == {"tls"}
    assert {(s.src_port, s.dst_port) for s in segments} == {
        (client_port, port),
        (port, client_port),
    }
    request_stream = _stream(segments, port)
    assert request_stream.startswith(b"POST /orders?id=0 HTTP/1.1\r\n")
    assert b'{"blob": "' + b"x" * 40000 + b'"}' in request_stream
    # the 40 kB body was split into chunks of at most 16 KiB
    assert max(len(s.payload) for s in segments) == 16384

    calls = _calls(segments)
    assert [(c.method, c.path, c.query, c.status) for c in calls] == [
        ("POST", "/orders", "id=0", 201),
        ("POST", "/orders", "id=1", 201),
    ]
    first, second = calls
    for c in calls:
        assert c.tls and c.source == "tls" and c.protocol == "http"
        assert (c.src_ip, c.src_port, c.dst_ip, c.dst_port) == (
            "127.0.0.1",
            client_port,
            "127.0.0.1",
            port,
        )
        assert ("X-Test", "yes") in c.response_headers
    assert ("X-Req", "abc0") in first.request_headers
    assert first.request_body == b'{"item": "tea"}'
    assert first.response_body == b'{"echo": {"item": "tea"}}'
    assert second.request_body_size == 40000 + 12
    assert second.response_body_size == 40000 + 12 + len(b'{"echo": }')
    assert "no_response" not in first.flags and "gap" not in second.flags


def test_discovers_processes_without_pids(cert, processes) -> None:
    """pids=None traces every process that maps libssl, including ones started later."""
    crt, key = cert
    port = _free_port_pair()
    server = _spawn([sys.executable, "-c", PY_SERVER, str(port), crt, key])
    processes.append(server)
    with TlsCapture() as cap:
        client = _spawn([sys.executable, "-c", PY_CLIENT, str(port), crt])
        processes.append(client)
        segments = _run_client(cap, client, port, fins=2)
    mine = [s for s in segments if port in (s.src_port, s.dst_port)]
    calls = _calls(mine)
    assert [(c.path, c.query, c.status, c.tls) for c in calls] == [
        ("/orders", "id=0", 201, True),
        ("/orders", "id=1", 201, True),
    ]


def test_go_https_plaintext_and_calls(cert, go_binary, processes) -> None:
    crt, key = cert
    port = _free_port_pair()
    server = _spawn([go_binary, "server", str(port), crt, key])
    url = f"https://127.0.0.1:{port}/echo?x=1"
    client = _spawn([go_binary, "client", url, crt, '{"go": 1}'])
    processes += [server, client]
    with TlsCapture(pids=[server.pid, client.pid]) as cap:
        files = cap.attached_files
        segments = _run_client(cap, client, port, fins=2)
    assert [f.kind for f in files] == ["go"]
    assert client.stdout is not None
    assert client.stdout.read().strip() == 'HTTP/1.1 202 {"go_echo": {"go": 1}}'

    calls = _calls(segments)
    assert len(calls) == 1
    call = calls[0]
    assert call.tls and call.source == "tls"
    assert (call.method, call.path, call.query, call.status) == ("POST", "/echo", "x=1", 202)
    assert (call.dst_ip, call.dst_port) == ("127.0.0.1", port)
    assert call.src_port not in (0, port)
    assert ("X-Go-Client", "abc") in call.request_headers
    assert ("X-Go-Server", "yes") in call.response_headers
    assert call.request_body == b'{"go": 1}'
    assert call.response_body == b'{"go_echo": {"go": 1}}'


def test_go_client_alone_gives_both_directions(cert, go_binary, processes) -> None:
    """Tracing only one end (a Go client against a Python server) still gives the call."""
    crt, key = cert
    port = _free_port_pair()
    server = _spawn([sys.executable, "-c", PY_SERVER, str(port), crt, key])
    client = _spawn([go_binary, "client", f"https://127.0.0.1:{port}/p", crt, '{"a": 2}'])
    processes += [server, client]
    with TlsCapture(pids=[client.pid]) as cap:
        segments = _run_client(cap, client, port, fins=2)
    calls = _calls(segments)
    assert [(c.path, c.status, c.request_body, c.response_body) for c in calls] == [
        ("/p", 201, b'{"a": 2}', b'{"echo": {"a": 2}}')
    ]


def test_asyncio_memory_bio_tls(cert, processes) -> None:
    crt, key = cert
    port = _free_port_pair()
    server = _spawn([sys.executable, "-c", ASYNC_SERVER, str(port), crt, key])
    client = _spawn([sys.executable, "-c", ASYNC_CLIENT, str(port), crt])
    processes += [server, client]
    with TlsCapture(pids=[server.pid, client.pid]) as cap:
        segments = _run_client(cap, client, port, fins=2)
        stats = cap.stats()
    assert stats["no_fd"] == 0
    assert client.stdout is not None
    client_port = int(client.stdout.read())
    calls = _calls(segments)
    assert [(c.path, c.status, c.request_body, c.response_body) for c in calls] == [
        ("/async/0", 200, b'{"n": 0}', b'{"async_echo": {"n": 0}}'),
        ("/async/1", 200, b'{"n": 1}', b'{"async_echo": {"n": 1}}'),
    ]
    assert all(c.tls and (c.src_port, c.dst_port) == (client_port, port) for c in calls)
    assert ("X-Async", "1") in calls[0].response_headers


def test_node_static_openssl_client_exits_without_close(cert, processes) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    crt, key = cert
    port = _free_port_pair()
    server = _spawn([sys.executable, "-c", PY_SERVER, str(port), crt, key])
    client = _spawn([node, "-e", NODE_CLIENT, str(port), crt, '{"node": true}'])
    processes += [server, client]
    with TlsCapture(pids=[client.pid]) as cap:
        files = cap.attached_files
        # process.exit() closes the socket without close(2): the exit gives the FINs
        segments = _run_client(cap, client, port, fins=2)
        stats = cap.stats()
    assert [(f.kind, Path(f.path).name) for f in files] == [("openssl", Path(node).name)]
    assert stats["no_fd"] == 0 and stats["unresolved"] == 0
    assert client.stdout is not None
    client_port = int(client.stdout.read())
    calls = _calls(segments)
    assert [(c.method, c.path, c.query, c.status) for c in calls] == [("POST", "/node", "q=1", 201)]
    call = calls[0]
    assert call.tls and (call.src_port, call.dst_port) == (client_port, port)
    assert ("X-Node", "n1") in call.request_headers
    assert call.request_body == b'{"node": true}'
    assert call.response_body == b'{"echo": {"node": true}}'


def test_go_http2_over_tls(cert, go_binary, processes) -> None:
    crt, key = cert
    port = _free_port_pair()
    h2 = {"TLSGO_H2": "1"}
    server = _spawn([go_binary, "server", str(port), crt, key], h2)
    url = f"https://127.0.0.1:{port}/echo?v=2"
    client = _spawn([go_binary, "client", url, crt, '{"h2": true}'], h2)
    processes += [server, client]
    with TlsCapture(pids=[server.pid, client.pid]) as cap:
        segments = _run_client(cap, client, port, fins=2)
    assert client.stdout is not None
    assert client.stdout.read().strip() == 'HTTP/2.0 202 {"go_echo": {"h2": true}}'
    request_stream = _stream(segments, port)
    assert request_stream.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    calls = _calls(segments)
    assert [(c.protocol, c.method, c.path, c.query, c.status) for c in calls] == [
        ("http2", "POST", "/echo", "v=2", 202)
    ]
    call = calls[0]
    assert call.tls and (call.dst_ip, call.dst_port) == ("127.0.0.1", port)
    assert ("x-go-client", "abc") in call.request_headers
    assert call.request_body == b'{"h2": true}'
    assert call.response_body == b'{"go_echo": {"h2": true}}'


def test_ciphertext_of_a_captured_tls_connection_is_no_tcp_row(cert, processes) -> None:
    """--tls beside AF_PACKET: the connection is stored as its plaintext calls only."""
    crt, key = cert
    port = _free_port_pair()
    server = _spawn([sys.executable, "-c", PY_SERVER, str(port), crt, key])
    client = _spawn([sys.executable, "-c", PY_CLIENT, str(port), crt])
    processes += [server, client]
    batches: list[tuple[str, list[Segment]]] = []  # in publish order, as one partition
    tls = TlsCapture(pids=[server.pid, client.pid])
    tls.start()
    loop = LiveLoop(
        [AfPacketCapture(["lo"], ports=[port]), tls],
        lambda fid, segments: batches.append((fid, segments)),
        flush_every_s=0.05,
    )

    def fins(transport: str) -> int:
        return sum(1 for _, b in batches for s in b if s.transport == transport and s.flags & FIN)

    assert client.stdin is not None
    client.stdin.write("go\n")
    client.stdin.flush()
    deadline = time.monotonic() + 60  # a guard against hanging, not a speed check
    try:
        while client.poll() is None or fins("tcp") < 1 or fins("tls") < 2:
            assert time.monotonic() < deadline, f"capture incomplete: {fins('tcp')} {fins('tls')}"
            loop.step(0.1)
    finally:
        loop.finish()
    assert client.returncode == 0
    # Both flows of the connection are keyed alike, so they reach the same worker.
    assert len({partition_key(fid) for fid, _ in batches}) == 1

    def calls_of(kept: list[tuple[str, list[Segment]]]) -> list[ApiCall]:
        pipe = Pipeline(default_registry(), RedactionPolicy.default())
        calls = [c for token, (_, b) in enumerate(kept) for c in pipe.process(token, b).calls]
        return sorted(calls + pipe.finish().calls, key=lambda c: c.ts_ns)

    calls = calls_of(batches)
    assert [(c.protocol, c.method, c.status, c.tls) for c in calls] == [
        ("http", "POST", 201, True),
        ("http", "POST", 201, True),
    ]
    # Without the plaintext the same ciphertext is still one `tcp` row: nothing else hid it.
    raw = [(fid, b) for fid, b in batches if fid.startswith("tcp:")]
    (row,) = calls_of(raw)
    assert row.protocol == "tcp" and row.dst_port == port and row.request_body_size > 40000


def _storm(pids: list[int], client: subprocess.Popen[str], port: int, total: int) -> None:
    """Capture a storm of `total` one-call connections to `port` and check that each call
    is stored once, on the connection it was made on: the server answers with the client
    port it saw, so a call whose response names another port than its own request came
    from a swapped chunk. The client prints "ID PORT" per call (its own local port)."""
    with TlsCapture(pids=pids) as cap:
        # each traced close of a connection gives two FIN segments
        segments = _run_client(cap, client, port, fins=2 * len(pids) * total)
        stats = cap.stats()
    assert client.stdout is not None
    made = dict(line.split() for line in client.stdout.read().split("\n") if line)
    assert len(made) == total and len(set(made.values())) == total
    assert stats["ring_full"] == 0 and stats["no_fd"] == 0 and stats["unresolved"] == 0

    stored = {}
    for c in _calls(segments):
        call_id = dict(c.request_headers).get("X-Id")
        assert (c.path, c.status, c.flags) == ("/conn", 200, ()), (call_id, c)
        assert call_id not in stored, f"call {call_id} stored twice"
        stored[call_id] = c
        assert c.response_body == f"peer=127.0.0.1:{c.src_port} id={call_id}".encode()
        assert (c.dst_port, c.src_port) == (port, int(made[call_id]))
    assert sorted(stored, key=int) == [str(i) for i in range(total)]


@pytest.mark.parametrize("traced", ["both ends", "client only"])
def test_go_short_lived_concurrent_connections_never_swap_calls(cert, go_binary, processes, traced):
    """Hundreds of one-call connections at once from one Go process to another (fds, Go
    heap addresses and goroutines reused all the time). Traced alone, the client's request
    is the only copy (no server copy to fill in)."""
    crt, key = cert
    port, total = _free_port_pair(), 300
    server = _spawn([go_binary, "server", str(port), crt, key])
    url = f"https://127.0.0.1:{port}/conn"
    client = _spawn([go_binary, "storm", url, crt, str(total), "32"])
    processes += [server, client]
    _storm([server.pid, client.pid] if traced == "both ends" else [client.pid], client, port, total)


@pytest.mark.parametrize("traced", ["both ends", "client only"])
def test_openssl_short_lived_concurrent_connections_never_swap_calls(cert, processes, traced):
    """The same storm between two threaded Python processes (OpenSSL's SSL_read_ex and
    SSL_write_ex over socket BIOs; fds and SSL objects reused all the time)."""
    crt, key = cert
    port, total = _free_port_pair(), 300
    server = _spawn([sys.executable, "-c", PY_SERVER, str(port), crt, key])
    client = _spawn([sys.executable, "-c", PY_STORM_CLIENT, str(port), crt, str(total), "32"])
    processes += [server, client]
    _storm([server.pid, client.pid] if traced == "both ends" else [client.pid], client, port, total)


def test_openssl_write_ends_after_another_thread_closed_its_fd(cert, processes) -> None:
    """An SSL_write blocked in the kernel while another thread closes its fd and a new
    connection gets the same fd number: the write is pinned to its connection at the
    syscall, so its bytes stay there (not on the new connection, which keeps its own
    numbering), and the first connection's FINs wait for them."""
    crt, key = cert
    port = _free_port_pair()
    server = _spawn([sys.executable, "-c", RACE_SERVER, str(port), crt, key])
    client = _spawn([sys.executable, "-c", RACE_CLIENT, str(port), crt])
    processes += [server, client]
    with TlsCapture(pids=[client.pid]) as cap:
        segments = _run_client(cap, client, port, fins=4)
        stats = cap.stats()
    assert stats["no_fd"] == 0 and stats["unresolved"] == 0
    assert client.stdout is not None
    first_port, second_port = map(int, client.stdout.read().split())
    calls = [
        (c.src_port, c.method, c.path, c.status, c.request_body_size, c.flags)
        for c in _calls(segments)
    ]
    # (the first call's bytes come last: when its write returned)
    assert calls == [
        (second_port, "GET", "/second", 200, 0, ()),
        (first_port, "POST", "/first", 0, 16000, ("no_response",)),
    ]
