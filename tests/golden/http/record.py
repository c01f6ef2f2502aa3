"""Record real HTTP/1.x traffic for the dissector tests, and (re)write the golden files.

Real servers (a `http.server` handler with gzip / br / deflate, chunked bodies with
trailers, HEAD, 204/304, 100-continue, bodies delimited by close, Upgrade and CONNECT;
nginx when installed) are reached by real clients (`http.client`, `urllib`, curl, raw
sockets for pipelining) through `RecordingProxy`, a TCP proxy that keeps each
direction's bytes with capture timestamps and TCP-like sequence numbers.

    python tests/golden/http/record.py          # rewrite tests/golden/http/*.json

The tests import this file for the same servers, clients and proxy.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from schemas.records import ApiCall, flow_id  # noqa: E402
from streams.dissect.base import DissectFailed  # noqa: E402
from streams.dissect.http import HTTP1, Http1Factory  # noqa: E402
from streams.reassembly.events import Direction, Flow  # noqa: E402

# ----------------------------------------------------------------- recordings


@dataclass
class Recording:
    """Both directions of one TCP connection as a capture would deliver them."""

    client: tuple[str, int]
    server: tuple[str, int]
    isn: tuple[int, int]
    events: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # dir, ts, seq, data
    close_ts: int = 0
    sent: list[int] = field(default_factory=lambda: [0, 0])

    @property
    def flow(self) -> Flow:
        (cip, cport), (sip, sport) = self.client, self.server
        return Flow(flow_id(cip, cport, sip, sport), cip, cport, sip, sport)

    def stream(self, direction: int) -> bytes:
        return b"".join(d for dr, _, _, d in self.events if dr == direction)

    def to_json(self) -> dict:
        return {
            "client": list(self.client),
            "server": list(self.server),
            "isn": list(self.isn),
            "close_ts": self.close_ts,
            "segments": [
                {"dir": d, "ts": ts, "seq": seq, **encode_bytes(data)}
                for d, ts, seq, data in self.events
            ],
        }

    @classmethod
    def from_json(cls, doc: dict) -> Recording:
        rec = cls(tuple(doc["client"]), tuple(doc["server"]), tuple(doc["isn"]))
        rec.close_ts = doc["close_ts"]
        rec.events = [(s["dir"], s["ts"], s["seq"], decode_bytes(s)) for s in doc["segments"]]
        return rec


def encode_bytes(data: bytes) -> dict:
    """Readable when the bytes are text (escaped by JSON), base64 otherwise."""
    try:
        text = data.decode("ascii")
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            return {"text": text}
    except UnicodeDecodeError:
        pass
    return {"b64": base64.b64encode(data).decode()}


def decode_bytes(doc: dict) -> bytes:
    return doc["text"].encode("ascii") if "text" in doc else base64.b64decode(doc["b64"])


def feed(
    rec: Recording,
    factory: Http1Factory = HTTP1,
    events: list[tuple[int, int, int, bytes]] | None = None,
    check: Callable[[object], None] | None = None,
) -> list:
    """Run a recording (or a re-cut list of its segments) through one dissector."""
    d = factory(rec.flow)
    out: list = []
    for direction, ts, seq, data in rec.events if events is None else events:
        out += d.receive(Direction(direction), data, ts, seq)
        if check is not None:
            check(d)
    out += d.close(rec.close_ts)
    return out


# Fields capture never fills (the enrich and validate stages do); left out of the golden files.
_ENRICHED = (
    "src_pod", "src_namespace", "src_service", "dst_pod", "dst_namespace", "dst_service",
    "verdicts",
)  # fmt: skip


def call_to_json(call: ApiCall) -> dict:
    doc = {}
    for name in ApiCall.__slots__:
        v = getattr(call, name)
        if name in _ENRICHED and not v:
            continue
        if isinstance(v, bytes):
            v = encode_bytes(v)
        elif name.endswith("headers"):
            v = [list(h) for h in v]
        elif isinstance(v, tuple):
            v = list(v)
        doc[name] = v
    return doc


# --------------------------------------------------------------------- proxy


class RecordingProxy:
    """A TCP proxy in front of `target` that records every connection through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.recordings: list[Recording] = []
        self._lock = threading.Lock()
        self._last_ts = 0
        self._open = 0
        self._idle = threading.Condition(self._lock)
        threading.Thread(target=self._accept, daemon=True).start()

    def _ts(self) -> int:
        ts = max(time.time_ns(), self._last_ts + 1)  # strictly increasing: a causal order
        self._last_ts = ts
        return ts

    def _accept(self) -> None:
        while True:
            try:
                client, addr = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            rng = random.Random(addr[1])
            rec = Recording(
                addr[:2], ("127.0.0.1", self.port), (rng.getrandbits(32), rng.getrandbits(32))
            )
            with self._lock:
                self.recordings.append(rec)
                self._open += 1
            state = {"left": 2}
            for src, dst, d in ((client, upstream, 0), (upstream, client, 1)):
                threading.Thread(
                    target=self._pump, args=(rec, src, dst, d, state, client, upstream), daemon=True
                ).start()

    def _pump(self, rec, src, dst, d, state, client, upstream) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    seq = (rec.isn[d] + rec.sent[d]) & 0xFFFFFFFF
                    rec.sent[d] += len(data)
                    rec.events.append((d, self._ts(), seq, data))
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self._lock:
            state["left"] -= 1
            if state["left"] == 0:
                rec.close_ts = self._ts()
                client.close()
                upstream.close()
                self._open -= 1
                self._idle.notify_all()

    def wait_closed(self, timeout: float = 20.0) -> list[Recording]:
        """Wait until every connection has closed; returns (and forgets) the recordings."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._open:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._open} proxied connections still open")
                self._idle.wait(left)
            recs, self.recordings = self.recordings, []
        return recs

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------- servers

TEXT = ("The quick brown fox jumps over the lazy dog. " * 40).encode()
JSON_DOC = {"user": "alice", "token": "s3cr3t", "items": [1, 2, 3], "note": "héllo"}
BIG = b"".join(b"%05d: a line of a body bigger than the 64 KiB cap\n" % i for i in range(1400))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wiretide-test/1"
    sys_version = ""

    def log_message(self, *args: object) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Tue, 25 Nov 2025 18:00:00 GMT"  # stable golden files

    def _send(
        self, status: int, body: bytes, ctype: str = "text/plain", enc: str = "", extra=()
    ) -> None:
        if enc == "gzip":
            body = gzip.compress(body, mtime=0)
        elif enc == "br":
            body = brotli.compress(body)
        elif enc == "deflate":
            body = zlib.compress(body)
        elif enc == "raw-deflate":
            c = zlib.compressobj(wbits=-15)
            body = c.compress(body) + c.flush()
            enc = "deflate"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if enc:
            self.send_header("Content-Encoding", enc)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if not size:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:  # noqa: C901 - a router
        path = self.path.split("?")[0]
        accept = self.headers.get("Accept-Encoding", "")
        if path == "/json":
            self._send(
                200,
                json.dumps(JSON_DOC).encode(),
                "application/json",
                "gzip" if "gzip" in accept else "",
            )
        elif path == "/text":
            self._send(200, TEXT)
        elif path == "/br":
            self._send(200, TEXT, enc="br")
        elif path == "/deflate":
            self._send(200, TEXT, enc="deflate")
        elif path == "/raw-deflate":
            self._send(200, TEXT, enc="raw-deflate")
        elif path == "/big":
            self._send(200, BIG, "application/octet-stream")
        elif path in ("/chunked", "/chunked-gzip"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            payload = TEXT
            if path == "/chunked-gzip":
                self.send_header("Content-Encoding", "gzip")
                payload = gzip.compress(TEXT, mtime=0)
            self.end_headers()
            if self.command == "HEAD":
                return
            for k in range(0, len(payload), 700):
                piece = payload[k : k + 700]
                ext = ";ext=1" if k == 0 else ""
                self.wfile.write(b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\nX-Checksum: abc123\r\n\r\n")
        elif path == "/close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(TEXT)
            self.close_connection = True
        elif path == "/204":
            self.send_response(204)
            self.end_headers()
        elif path == "/etag":
            if self.headers.get("If-None-Match") == '"v1"':
                self.send_response(304)
                self.send_header("ETag", '"v1"')
                self.end_headers()
            else:
                self._send(200, b"versioned", extra=[("ETag", '"v1"')])
        elif path == "/upgrade" and self.headers.get("Upgrade"):
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", self.headers["Upgrade"])
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            self._echo()
        elif path == "/missing":
            self._send(404, b"not found")
        else:  # /upgrade-refused and the rest: a plain answer
            self._send(200, b"plain " + path.encode())

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body = self._read_body()
        ctype = self.headers.get("Content-Type", "application/octet-stream")
        self._send(201 if self.command == "PUT" else 200, body, ctype)

    do_PUT = do_POST

    def do_CONNECT(self) -> None:
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self._echo()

    def _echo(self) -> None:
        self.close_connection = True
        while True:
            data = self.rfile.read1(65536)
            if not data:
                return
            self.connection.sendall(data)


class Server:
    """A `ThreadingHTTPServer` with `Handler` behind a `RecordingProxy`."""

    def __init__(self) -> None:
        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.proxy = RecordingProxy(self.httpd.server_address[:2])
        self.port = self.proxy.port

    def close(self) -> None:
        self.proxy.close()
        self.httpd.shutdown()
        self.httpd.server_close()


class Nginx:
    """nginx (static files, gzip) behind a `RecordingProxy`; needs the nginx binary."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wt-nginx-"))
        www = self.dir / "www"
        www.mkdir()
        (www / "index.html").write_bytes(b"<html><body>" + TEXT + b"</body></html>")
        (www / "data.json").write_text(json.dumps({"users": [JSON_DOC] * 30}))
        (www / "blob.bin").write_bytes(BIG[:5000])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"""
daemon off; master_process off; worker_processes 1; user root;
error_log {self.dir}/error.log; pid {self.dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off; server_tokens off;
  types {{ text/html html; application/json json; application/octet-stream bin; }}
  client_body_temp_path {self.dir}/body; proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fcgi; uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  gzip on; gzip_types application/json text/plain; gzip_min_length 100;
  server {{ listen 127.0.0.1:{port}; root {www}; }}
}}
"""
        )
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            self.proc.kill()
            raise RuntimeError(f"nginx did not start: {(self.dir / 'error.log').read_text()}")
        self.proxy = RecordingProxy(("127.0.0.1", port))
        self.port = self.proxy.port

    def close(self) -> None:
        self.proxy.close()
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------- clients


def client_keepalive(port: int) -> None:
    """http.client over one keep-alive connection: encodings, HEAD, 204/304, uploads."""
    c = HTTPConnection("127.0.0.1", port, timeout=10)

    def go(method: str, url: str, body=None, headers=None, **kw) -> bytes:
        c.request(method, url, body=body, headers=headers or {}, **kw)
        r = c.getresponse()
        return r.read()

    go(
        "GET",
        "/json?user=alice&limit=10",
        headers={"Accept-Encoding": "gzip", "Authorization": "Bearer abc"},
    )
    go("GET", "/json", headers={"Cookie": "session=xyz; theme=dark"})
    go("HEAD", "/json", headers={"Accept-Encoding": "gzip"})
    go(
        "POST",
        "/echo",
        body=json.dumps({"password": "hunter2", "n": 1}).encode(),
        headers={"Content-Type": "application/json"},
    )
    go(
        "PUT",
        "/upload",
        body=iter([b"part one, ", b"part two"]),
        encode_chunked=True,
        headers={"Content-Type": "text/plain", "Transfer-Encoding": "chunked"},
    )
    go("GET", "/chunked")
    go("GET", "/chunked-gzip")
    go("GET", "/br")
    go("GET", "/deflate")
    go("GET", "/raw-deflate")
    go("GET", "/204")
    go("GET", "/etag")
    go("GET", "/etag", headers={"If-None-Match": '"v1"'})
    go("GET", "/big")
    go(
        "POST",
        "/continue",
        body=b"x" * 3000,
        headers={"Expect": "100-continue", "Content-Type": "text/plain"},
    )
    go("GET", "/upgrade-refused", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    go("GET", "/missing")
    c.close()


def client_pipelined(port: int) -> None:
    """Four requests in one write, then every response (the last asks to close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"GET /json?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /text HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 11\r\n\r\nhello world"
            b"GET /chunked HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        while s.recv(65536):
            pass


def client_close_delimited(port: int) -> None:
    """urllib (Connection: close) and a response whose body ends when the server closes."""
    urllib.request.urlopen(f"http://127.0.0.1:{port}/close", timeout=10).read()


def _switch_protocols(port: int, head: bytes, then: bytes) -> None:
    """Send `head`, read the response's head, then send bytes that are not HTTP and read
    to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        s.sendall(then)
        time.sleep(0.05)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass


def client_upgrade(port: int) -> None:
    """A WebSocket-style Upgrade (101), then opaque frames both ways."""
    _switch_protocols(
        port,
        b"GET /upgrade HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"\x81\x05hello GET / HTTP/1.1\r\n\r\n",
    )


def client_connect(port: int) -> None:
    """CONNECT to a tunnel, then bytes that are not HTTP."""
    _switch_protocols(
        port,
        b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
    )


def client_curl(port: int) -> None:
    """curl reusing one connection, curl -I, a chunked upload and 100-continue."""
    base = f"http://127.0.0.1:{port}"
    run = ["curl", "-sS", "--http1.1", "-o", "/dev/null"]
    subprocess.run(
        [
            *run,
            "--compressed",
            f"{base}/json?a=1",
            "-o",
            "/dev/null",
            f"{base}/br",
            "-o",
            "/dev/null",
            f"{base}/chunked",
        ],
        check=True,
        timeout=30,
    )
    subprocess.run([*run, "-I", f"{base}/text"], check=True, timeout=30)
    subprocess.run(
        [*run, "-T", "-", "-H", "Content-Type: text/plain", f"{base}/put"],
        input=b"streamed upload " * 50,
        check=True,
        timeout=30,
    )
    subprocess.run(
        [
            *run,
            "-H",
            "Expect: 100-continue",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            json.dumps({"username": "bob", "pass": "x" * 2000}),
            f"{base}/post",
        ],
        check=True,
        timeout=30,
    )


def client_nginx(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    subprocess.run(
        [
            "curl",
            "-sS",
            "--http1.1",
            "--compressed",
            "-o",
            "/dev/null",
            f"{base}/index.html",
            "-o",
            "/dev/null",
            f"{base}/data.json",
            "-o",
            "/dev/null",
            f"{base}/blob.bin",
            "-o",
            "/dev/null",
            f"{base}/nope",
        ],
        check=True,
        timeout=30,
    )
    subprocess.run(
        ["curl", "-sS", "--http1.1", "-I", f"{base}/data.json"],
        check=True,
        timeout=30,
        stdout=subprocess.DEVNULL,
    )


SCENARIOS: dict[str, Callable[[int], None]] = {
    "keepalive": client_keepalive,
    "pipelined": client_pipelined,
    "close_delimited": client_close_delimited,
    "upgrade": client_upgrade,
    "connect": client_connect,
}
if shutil.which("curl"):
    SCENARIOS["curl"] = client_curl
GOLDEN = ("keepalive", "pipelined", "close_delimited", "upgrade", "connect")


def record(server, scenario: Callable[[int], None]) -> list[Recording]:
    scenario(server.port)
    return server.proxy.wait_closed()


def record_all(names: Iterator[str] = SCENARIOS) -> dict[str, list[Recording]]:
    server = Server()
    try:
        return {name: record(server, SCENARIOS[name]) for name in names}
    finally:
        server.close()


def write_golden(name: str, recs: list[Recording]) -> Path:
    """One golden file: the recorded segments and the calls the dissector makes of them."""
    doc = {
        "scenario": name,
        "about": (SCENARIOS[name].__doc__ or "").strip(),
        "recorded_with": "tests/golden/http/record.py",
        "connections": [],
    }
    for rec in recs:
        events = feed(rec)
        doc["connections"].append(
            {
                **rec.to_json(),
                "calls": [call_to_json(e) for e in events if isinstance(e, ApiCall)],
                "failures": [e.reason for e in events if isinstance(e, DissectFailed)],
            }
        )
    path = HERE / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=True) + "\n")
    return path


def main() -> None:
    recorded = record_all(GOLDEN)
    for name, recs in recorded.items():
        path = write_golden(name, recs)
        print(f"{path.relative_to(ROOT)}: {len(recs)} connection(s)")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
