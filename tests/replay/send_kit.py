"""What the sending tests share: real servers on free ports that log what reached them
(a threaded Python HTTP/1.1 server, a grpcio server without generated code), and calls
as the pipeline stores them."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from schemas.records import ApiCall, flow_id
from streams.dissect.grpc import decode_message

SLOW_S = 1.0  # how long a path containing "slow" takes to answer


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int
    at: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def _any(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            self.client_address[1],
            time.monotonic(),
        )
        self.server.log.append(seen)  # type: ignore[attr-defined]
        if "slow" in self.path:
            time.sleep(SLOW_S)
        answer = json.dumps({"path": self.path, "method": self.command}).encode()
        if self.path.startswith(("/chunked", "/gzip")):
            return self._encoded(answer)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    def _encoded(self, answer: bytes) -> None:
        """Chunked (in 3-byte chunks, with a trailer) or gzip-encoded answers."""
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if self.path.startswith("/gzip"):
            body = gzip.compress(answer)
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i in range(0, len(answer), 3):
            part = answer[i : i + 3]
            self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\nx-trailer: 1\r\n\r\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _any

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_server(tls: tuple[str, str] | None = None) -> Iterator[tuple[int, list[Seen]]]:
    """A threaded HTTP/1.1 server on a free loopback port (HTTPS with `tls`: cert, key);
    (port, what reached it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if tls is not None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.log = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server.log  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


GRPC_SERVICE = "/wiretide.demo.Catalog"


@contextmanager
def grpc_server() -> Iterator[tuple[int, list[tuple[str, list[dict], dict[str, str]]]]]:
    """A grpcio server for the golden capture's Catalog service, on raw bytes (no generated
    code): logs (method, decoded request messages, metadata); Fail fails with code 3."""
    import grpc

    log: list[tuple[str, list[dict], dict[str, str]]] = []

    def note(name: str, messages: list[bytes], context) -> None:
        meta = {k: v for k, v in context.invocation_metadata()}
        log.append((name, [decode_message(m) for m in messages], meta))

    def get(request: bytes, context) -> bytes:
        note("Get", [request], context)
        return b"\x08\x2a"  # {1: 42}

    def list_(request: bytes, context):
        note("List", [request], context)
        yield b"\x08\x01"
        yield b"\x08\x02"

    def upload(requests, context) -> bytes:
        note("Upload", list(requests), context)
        return b"\x08\x03"

    def fail(request: bytes, context) -> bytes:
        note("Fail", [request], context)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such item")

    handlers = {
        "Get": grpc.unary_unary_rpc_method_handler(get),
        "List": grpc.unary_stream_rpc_method_handler(list_),
        "Upload": grpc.stream_unary_rpc_method_handler(upload),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(GRPC_SERVICE[1:], handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, log
    finally:
        server.stop(None)


def make_call(
    n: int,
    method: str = "GET",
    path: str = "/",
    *,
    conn: int = 0,
    ts_ms: float | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    query: str = "",
    protocol: str = "http",
    dst: tuple[str, int] = ("10.0.0.9", 8080),
) -> ApiCall:
    """A stored call: the n-th of the capture, on recorded connection `conn`."""
    src_port = 40000 + conn
    ts_ns = 1_800_000_000_000_000_000 + int((ts_ms if ts_ms is not None else n) * 1e6)
    return ApiCall(
        call_id=f"call-{n}",
        protocol=protocol,
        ts_ns=ts_ns,
        src_ip="10.0.0.1",
        src_port=src_port,
        dst_ip=dst[0],
        dst_port=dst[1],
        flow_id=flow_id("10.0.0.1", src_port, dst[0], dst[1]),
        method=method,
        path=path,
        query=query,
        request_version="HTTP/1.1",
        request_headers=(("host", f"{dst[0]}:{dst[1]}"), *headers),
        request_body=body,
        request_body_size=len(body),
        status=200,
        response_ts_ns=ts_ns + 1_000_000,
    )


NGINX_FILES = {"api/user.json": b'{"id": 7, "name": "Ann"}\n', "index.html": b"<h1>hi</h1>\n"}


@contextmanager
def nginx(tmp: Path, keepalive_requests: int = 100_000) -> Iterator[tuple[int, int]]:
    """nginx on two free ports: (HTTP/1.1 port, cleartext HTTP/2 port), serving
    NGINX_FILES; access-logged to tmp/access.log (method, path, protocol, mark header)."""
    from tests.conftest import stop_all
    from tests.golden.protocols.recording import wait_port

    www = tmp / "www"
    for name, data in NGINX_FILES.items():
        (www / name).parent.mkdir(parents=True, exist_ok=True)
        (www / name).write_bytes(data)
    (tmp / "temp").mkdir(exist_ok=True)
    os.chmod(tmp, 0o755)
    for path in www.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(www, 0o755)
    h1, h2 = free_port(), free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # workers read pytest's 0700 dirs
        + f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format replay '$request_method $request_uri $server_protocol $http_x_wiretide_replay';
    access_log {tmp}/access.log replay;
    default_type application/octet-stream;
    types {{ application/json json; text/html html; }}
    keepalive_requests {keepalive_requests};
    client_body_temp_path {tmp}/temp/body;
    proxy_temp_path {tmp}/temp/proxy;
    fastcgi_temp_path {tmp}/temp/fastcgi;
    uwsgi_temp_path {tmp}/temp/uwsgi;
    scgi_temp_path {tmp}/temp/scgi;
    server {{
        listen 127.0.0.1:{h1};
        listen 127.0.0.1:{h2} http2;
        root {www};
        location / {{ try_files $uri =404; }}
    }}
}}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_port(h1, 60)
        wait_port(h2, 60)
        yield h1, h2
    finally:
        stop_all([proc])


def access_log(tmp: Path) -> list[list[str]]:
    """nginx's log lines, split: [method, uri, protocol, mark]."""
    path = tmp / "access.log"
    return [line.split(" ") for line in path.read_text().splitlines()] if path.exists() else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
