"""Record the end-to-end golden capture `http_basic.pcap` from REAL HTTP traffic.

Run by hand (as root, needs tcpdump, tshark and curl) to regenerate the goldens:

    python tests/golden/e2e/record.py

It starts a small HTTP/1.1 keep-alive server (this file with `--serve`) on a free
loopback port, records the port with `tcpdump -i lo`, and drives real clients at it:
curl (several runs, one reusing one connection for two URLs, one `--compressed`),
`http.client` (several requests on one keep-alive connection), `urllib.request`, and a
raw socket that pipelines three GETs in one send. It then writes

* `http_basic.pcap` — the capture (kept under 100 KB);
* `http_basic.expected.json` — every call AS THE CLIENTS SAW IT (what they sent and
  what they received, bodies decoded), in the order the requests were sent, with the
  default-sensitive fields replaced by "[REDACTED]" (REFERENCE.md, "Default
  redaction"). It is built from the clients' side only, never from Wiretide.

Each entry of the expected list:

    {"client", "src": {"ip", "port"}, "dst": {"ip", "port"},
     "method", "path", "query",            # query: raw string without "?", redacted
     "request":  {"headers", "body", "body_kind", "body_size"},
     "response": {"status", "reason", "headers", "body", "body_kind", "body_size"}}

`headers` maps lower-cased names to values (a repeated name's values joined with ", ").
`body_kind` is "empty", "json" (body is the parsed, redacted value), "form" (body is the
redacted urlencoded string) or "text". `body_size` is the body's size on the wire
(Content-Length; 0 when no body was sent; null for chunked bodies, whose wire size
depends on whether framing is counted).

Finally the capture is checked with tshark: it must decode exactly the requests and
responses the clients made, in the same order.
"""

from __future__ import annotations

import gzip
import http.client
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PCAP = HERE / "http_basic.pcap"
EXPECTED = HERE / "http_basic.expected.json"
HOST = "127.0.0.1"
MAX_PCAP_BYTES = 100_000

# REFERENCE.md, "Default redaction" (Mizu's list), followed literally.
SENSITIVE_WORDS = (
    "token", "authorization", "authentication", "cookie", "userid", "password",
    "username", "user", "key", "passcode", "pass", "auth", "authtoken", "jwt", "bearer",
    "clientid", "clientsecret", "redirecturi", "phonenumber", "zip", "zipcode", "address",
    "country", "firstname", "lastname", "middlename", "fname", "lname", "birthdate",
)  # fmt: skip
REDACTED = "[REDACTED]"


# --------------------------------------------------------------------------------------
# The server (runs in a subprocess: `record.py --serve`)
# --------------------------------------------------------------------------------------

USERS = {
    "7": {"id": 7, "name": "Ann", "email": "ann@example.com", "api_key": "k-7-aaaa"},
    "8": {"id": 8, "name": "Ben", "email": "ben@example.com", "api_key": "k-8-bbbb"},
    "9": {"id": 9, "name": "Cai", "email": "cai@example.com", "api_key": "k-9-cccc"},
}
ETAG = '"v1-5f3a"'


def _users_payload(query: dict[str, list[str]]) -> bytes:
    uid = query.get("id", ["7"])[0]
    page = int(query.get("page", ["1"])[0])
    user = USERS.get(uid, {"id": int(uid) if uid.isdigit() else 0, "name": "?"})
    doc = {
        "items": [user],  # a list of objects: its sensitive keys are redacted too
        "page": page,
        "per_page": 1,
        "meta": {"next_token": f"n-{uid}-{page + 1}", "total": len(USERS), "zip": "90210-4455"},
    }
    return json.dumps(doc).encode()


def _big_text() -> bytes:
    # ~40 KB of UTF-8 text with multi-byte characters, so segment boundaries and any
    # body cap may fall inside a character.
    lines = [
        f"line {i:04d}: the quick brown fox — ünïcödé ✓ jumps over the lazy dog\n"
        for i in range(520)
    ]
    return "".join(lines).encode()


def _deflate_payload() -> bytes:
    doc = {"report": "weekly", "rows": [{"day": d, "calls": 100 + 7 * d} for d in range(7)]}
    return json.dumps(doc).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; pipelined requests are served in order
    server_version = "WiretideGolden/1.0"

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    # -- helpers -----------------------------------------------------------------------
    def _accepts(self, coding: str) -> bool:
        value = self.headers.get("Accept-Encoding", "")
        return coding in [p.split(";")[0].strip().lower() for p in value.split(",")]

    def _send(self, status: int, body: bytes, ctype: str | None, extra=(), head=False) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for name, value in extra:
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and status not in (204, 304) and body:
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    # -- routes ------------------------------------------------------------------------
    def _users(self, head: bool) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        body = _users_payload(query)
        extra = [("Vary", "Accept-Encoding"), ("Cache-Control", "no-store")]
        if self._accepts("gzip"):
            body = gzip.compress(body, mtime=0)
            extra.append(("Content-Encoding", "gzip"))
        self._send(200, body, "application/json", extra, head=head)

    def do_HEAD(self) -> None:  # noqa: N802
        if urllib.parse.urlsplit(self.path).path == "/api/users":
            self._users(head=True)
        else:
            self._send(404, b"", "text/plain", head=True)

    def do_GET(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if path == "/api/users":
            self._users(head=False)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"first chunk\n", b"second, a little longer chunk\n", b"third\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/empty":
            self._send(204, b"", None, [("X-Request-Id", "req-204")])
        elif path == "/cached":
            if self.headers.get("If-None-Match") == ETAG:
                self._send(304, b"", None, [("ETag", ETAG), ("Cache-Control", "max-age=60")])
            else:
                self._send(
                    200,
                    b'{"cached": true, "version": 1}',
                    "application/json",
                    [("ETag", ETAG), ("Cache-Control", "max-age=60")],
                )
        elif path == "/big":
            body = _big_text()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 8192):  # several writes -> several segments
                self.wfile.write(body[i : i + 8192])
        elif path == "/deflate":
            body = _deflate_payload()
            extra = [("Vary", "Accept-Encoding")]
            if self._accepts("deflate"):
                body = zlib.compress(body)  # HTTP "deflate" is the zlib format
                extra.append(("Content-Encoding", "deflate"))
            self._send(200, body, "application/json", extra)
        else:
            self._send(404, f"no such resource: {path}\n".encode(), "text/plain; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        raw = self._read_body()
        if path == "/login":
            creds = json.loads(raw)
            doc = {
                "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl",
                "token_type": "Bearer",
                "expires_in": 3600,
                "profile": {
                    "display_name": creds["username"].title(),
                    "zip": "90210-4455",
                    "roles": ["admin", "dev"],
                },
            }
            self._send(
                200,
                json.dumps(doc).encode(),
                "application/json",
                [("Set-Cookie", "sid=31d4d96e407aad42; Path=/; HttpOnly")],
            )
        elif path == "/form":
            fields = urllib.parse.parse_qs(raw.decode())
            doc = {
                "ok": True,
                "fields": sorted(fields),
                "comment_length": len(fields.get("comment", [""])[0]),
            }
            self._send(201, json.dumps(doc).encode(), "application/json", [("Location", "/form/1")])
        else:
            self._send(404, b"no such resource\n", "text/plain; charset=utf-8")


def serve() -> None:
    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --------------------------------------------------------------------------------------
# Redaction of what the clients saw (REFERENCE.md rules)
# --------------------------------------------------------------------------------------


def sensitive(name: str) -> bool:
    norm = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    return any(word in norm for word in SENSITIVE_WORDS)


def redact_json(value):  # noqa: ANN001, ANN201
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if sensitive(key):
                # Keep the golden unambiguous: whole objects, lists or nulls under a
                # sensitive key are avoided (implementations differ on those).
                assert item is not None and not isinstance(item, dict | list), key
                out[key] = REDACTED
            else:
                out[key] = redact_json(item)
        return out
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    return value


def redact_urlencoded(text: str) -> str:
    """Redact the values of sensitive names in `a=1&b=2`, keeping the rest byte for byte."""
    parts = []
    for part in text.split("&") if text else []:
        name, eq, _value = part.partition("=")
        plain = urllib.parse.unquote_plus(name)
        parts.append(f"{name}={REDACTED}" if eq and sensitive(plain) else part)
    return "&".join(parts)


def header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        value = REDACTED if sensitive(key) else value
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def decode_content(body: bytes, headers: list[tuple[str, str]]) -> bytes:
    coding = dict((n.lower(), v) for n, v in headers).get("content-encoding", "").lower()
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "deflate":
        return zlib.decompress(body)
    assert coding in ("", "identity"), coding
    return body


def body_entry(body: bytes, headers: list[tuple[str, str]]) -> tuple[object, str]:
    if not body:
        return "", "empty"
    ctype = dict((n.lower(), v) for n, v in headers).get("content-type", "").lower()
    if "json" in ctype:
        try:
            return redact_json(json.loads(body)), "json"
        except ValueError:
            raise SystemExit(f"not JSON: {body[:80]!r} {headers}") from None
    if "x-www-form-urlencoded" in ctype:
        return redact_urlencoded(body.decode()), "form"
    return body.decode("utf-8"), "text"


# --------------------------------------------------------------------------------------
# What the clients saw
# --------------------------------------------------------------------------------------


class Seen:
    """One request/response pair from the client's point of view (raw, not redacted)."""

    def __init__(
        self,
        client: str,
        src_port: int,
        method: str,
        target: str,
        req_headers: list[tuple[str, str]],
        req_body: bytes,
        status: int,
        reason: str,
        resp_headers: list[tuple[str, str]],
        resp_body: bytes,
    ) -> None:
        self.client, self.src_port, self.method, self.target = client, src_port, method, target
        self.req_headers, self.req_body = req_headers, req_body
        self.status, self.reason = status, reason
        self.resp_headers, self.resp_body = resp_headers, resp_body  # resp_body decoded

    def wire_size(self, headers: list[tuple[str, str]], body_present: bool) -> int | None:
        h = {n.lower(): v for n, v in headers}
        if not body_present:
            return 0
        if "chunked" in h.get("transfer-encoding", "").lower():
            return None
        return int(h.get("content-length", "0"))

    def expected(self, port: int) -> dict:
        path, _, query = self.target.partition("?")
        req_body, req_kind = body_entry(self.req_body, self.req_headers)
        resp_body, resp_kind = body_entry(self.resp_body, self.resp_headers)
        resp_has_body = self.method != "HEAD" and self.status not in (204, 304)
        return {
            "client": self.client,
            "src": {"ip": HOST, "port": self.src_port},
            "dst": {"ip": HOST, "port": port},
            "method": self.method,
            "path": path,
            "query": redact_urlencoded(query),
            "request": {
                "headers": header_map(self.req_headers),
                "body": req_body,
                "body_kind": req_kind,
                "body_size": self.wire_size(self.req_headers, bool(self.req_body)),
            },
            "response": {
                "status": self.status,
                "reason": self.reason,
                "headers": header_map(self.resp_headers),
                "body": resp_body,
                "body_kind": resp_kind,
                "body_size": self.wire_size(self.resp_headers, resp_has_body),
            },
        }


def parse_request_bytes(raw: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ")
    headers = [tuple(s.strip() for s in line.split(":", 1)) for line in lines[1:]]
    return method, target, headers, body  # type: ignore[return-value]


def run_curl(base: str, args: list[str], urls: list[str], body: bytes = b"") -> list[Seen]:
    """Run one curl (maybe several URLs on one connection); parse its -v trace."""
    with tempfile.TemporaryDirectory(prefix="wt-curl-") as tmp:
        return _run_curl(Path(tmp), base, args, urls, body)


def _run_curl(work: Path, base: str, args: list[str], urls: list[str], body: bytes) -> list[Seen]:
    cmd = ["curl", "-sS", "-v", "-w", "wt-local-port=%{local_port};\n", *args]
    for i, url in enumerate(urls):
        cmd += ["-o", str(work / f"body{i}"), base + url]
    proc = subprocess.run(cmd, capture_output=True, timeout=30)
    if proc.returncode != 0:
        raise SystemExit(f"curl failed ({proc.returncode}): {proc.stderr.decode()}")
    ports = [int(p.split(";")[0]) for p in proc.stdout.decode().split("wt-local-port=")[1:]]
    reqs: list[list[str]] = []
    resps: list[list[str]] = []
    for line in proc.stderr.decode("latin-1").splitlines():
        line = line.rstrip("\r")
        if line.startswith("> "):
            if not reqs or (reqs[-1] and reqs[-1][-1] == ""):
                reqs.append([])
            reqs[-1].append(line[2:])
        elif line.startswith("< "):
            if not resps or (resps[-1] and resps[-1][-1] == ""):
                resps.append([])
            resps[-1].append(line[2:])
    assert len(reqs) == len(resps) == len(urls) == len(ports), (reqs, resps, ports)
    if len(urls) > 1:
        assert "Re-using existing connection" in proc.stderr.decode(), "no keep-alive reuse"
        assert len(set(ports)) == 1, ports
    seen = []
    for i, (req, resp) in enumerate(zip(reqs, resps, strict=True)):
        method, target, _ = req[0].split(" ")
        req_headers = [tuple(s.strip() for s in h.split(":", 1)) for h in req[1:] if h]
        _version, status, reason = resp[0].split(" ", 2)
        resp_headers = [tuple(s.strip() for s in h.split(":", 1)) for h in resp[1:] if h]
        out = work / f"body{i}"
        # With -I curl writes the response head into the output file: a HEAD has no body.
        resp_body = out.read_bytes() if out.exists() and method != "HEAD" else b""
        if "--compressed" not in args:
            resp_body = decode_content(resp_body, resp_headers)  # type: ignore[arg-type]
        seen.append(
            Seen(
                "curl",
                ports[i],
                method,
                target,
                req_headers,  # type: ignore[arg-type]
                body if i == 0 else b"",
                int(status),
                reason,
                resp_headers,  # type: ignore[arg-type]
                resp_body,
            )
        )
    return seen


class RecordingConnection(http.client.HTTPConnection):
    """An HTTPConnection that remembers the exact bytes it sends."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.sent = bytearray()
        self.local_port = 0

    def connect(self) -> None:
        super().connect()
        self.local_port = self.sock.getsockname()[1]

    def send(self, data) -> None:  # noqa: ANN001
        self.sent += data if isinstance(data, bytes | bytearray) else bytes(data)
        super().send(data)

    def take(self) -> bytes:
        raw, self.sent = bytes(self.sent), bytearray()
        return raw


def seen_from(
    client: str, conn: RecordingConnection, resp: http.client.HTTPResponse, raw_body: bytes
) -> Seen:
    method, target, headers, body = parse_request_bytes(conn.take())
    resp_headers = resp.getheaders()
    return Seen(
        client,
        conn.local_port,
        method,
        target,
        headers,
        body,
        resp.status,
        resp.reason,
        resp_headers,
        decode_content(raw_body, resp_headers),
    )


def run_http_client(port: int) -> list[Seen]:
    conn = RecordingConnection(HOST, port, timeout=10)
    seen = []
    plan = [
        ("GET", "/chunked", None, {}),
        ("GET", "/cached", None, {}),
        ("GET", "/cached", None, {"If-None-Match": ETAG}),
        ("GET", "/deflate", None, {"Accept-Encoding": "deflate"}),
        ("GET", "/empty", None, {"X-Trace": "t-1"}),
        (
            "POST",
            "/login",
            json.dumps({"username": "alice", "password": "pa55", "remember": False}).encode(),
            {"Content-Type": "application/json"},
        ),
    ]
    ports = set()
    for method, url, body, headers in plan:
        conn.request(method, url, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        seen.append(seen_from("http.client", conn, resp, raw))
        ports.add(conn.local_port)
    conn.close()
    assert len(ports) == 1, f"http.client did not keep the connection alive: {ports}"
    return seen


_URLLIB_CONNS: list[RecordingConnection] = []


class RecordingHandler(urllib.request.HTTPHandler):
    def http_open(self, req):  # noqa: ANN001, ANN201
        def factory(host, **kw):  # noqa: ANN001, ANN003, ANN202
            conn = RecordingConnection(host, **kw)
            _URLLIB_CONNS.append(conn)
            return conn

        return self.do_open(factory, req)


def run_urllib(base: str) -> list[Seen]:
    opener = urllib.request.build_opener(RecordingHandler)
    seen = []
    form = urllib.parse.urlencode({"user": "bob", "comment": "great tool & fast!"}).encode()
    for req in (
        urllib.request.Request(base + "/form", data=form, method="POST"),
        urllib.request.Request(base + "/api/users?id=9&page=1"),
    ):
        with opener.open(req, timeout=10) as resp:
            raw = resp.read()
            seen.append(seen_from("urllib", _URLLIB_CONNS[-1], resp, raw))
    return seen


class _KeepOpen(io.BufferedReader):
    def close(self) -> None:  # HTTPResponse closes its fp when done; the next one needs it
        pass


class _SharedReader:
    def __init__(self, sock: socket.socket) -> None:
        self.fp = _KeepOpen(socket.SocketIO(sock, "rb"))

    def makefile(self, *_args, **_kwargs) -> io.BufferedReader:  # noqa: ANN002, ANN003
        return self.fp


def run_pipelined(port: int) -> list[Seen]:
    targets = ["/api/users?id=8&page=3", "/chunked", "/missing"]
    raws = [
        (
            f"GET {t} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: */*\r\n"
            f"X-Client: raw-pipeline\r\n\r\n"
        ).encode()
        for t in targets
    ]
    sock = socket.create_connection((HOST, port), timeout=10)
    local_port = sock.getsockname()[1]
    sock.sendall(b"".join(raws))  # all three requests in one send
    reader = _SharedReader(sock)
    seen = []
    for raw in raws:
        resp = http.client.HTTPResponse(reader, method="GET")  # type: ignore[arg-type]
        resp.begin()
        body = resp.read()
        method, target, headers, req_body = parse_request_bytes(raw)
        resp_headers = resp.getheaders()
        seen.append(
            Seen(
                "raw-socket-pipelined",
                local_port,
                method,
                target,
                headers,
                req_body,
                resp.status,
                resp.reason,
                resp_headers,
                decode_content(body, resp_headers),
            )
        )
    sock.close()
    return seen


def drive_clients(port: int) -> list[Seen]:
    base = f"http://{HOST}:{port}"
    users = "/api/users?id=7&token=s3cret&page=2"
    seen: list[Seen] = []
    seen += run_curl(
        base, ["-H", "Authorization: Bearer abc.def", "-b", "session=xyz; theme=dark"], [users]
    )
    seen += run_curl(base, ["--compressed"], [users])
    seen += run_curl(base, [], ["/missing", "/big"])  # two URLs, one keep-alive connection
    login = b'{"username": "bob", "password": "hunter2", "remember": true}'
    seen += run_curl(
        base,
        ["-H", "Content-Type: application/json", "--data-binary", login.decode()],
        ["/login"],
        body=login,
    )
    seen += run_curl(base, ["-I"], ["/api/users"])  # HEAD
    seen += run_http_client(port)
    seen += run_urllib(base)
    seen += run_pipelined(port)
    return seen


# --------------------------------------------------------------------------------------
# Capture and verification
# --------------------------------------------------------------------------------------


def start_server() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, int(line)


def start_tcpdump(port: int, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-s", "0", "-U", "-n", "-w", str(out), f"tcp port {port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()  # type: ignore[union-attr]  # "listening on lo, ..."
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"tcpdump did not start: {line.strip()}")
    return proc


def stop_tcpdump(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    dropped = [ln for ln in err.splitlines() if "dropped by kernel" in ln]
    if dropped and not dropped[0].startswith("0 "):
        raise SystemExit(f"tcpdump dropped packets: {dropped[0]}")


def tshark_fields(pcap: Path, port: int, display: str, *fields: str) -> list[list[str]]:
    """Per field, its values in the packets tshark shows for `display`, in order, with
    HTTP decoded on `port`."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},http", "-Y", display,
         "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
         *[arg for name in fields for arg in ("-e", name)]],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    columns: list[list[str]] = [[] for _ in fields]
    for line in out.splitlines():
        for column, values in zip(columns, line.split("\t"), strict=True):
            column += values.split("|")
    return columns


def tshark_requests(pcap: Path, port: int) -> list[tuple[str, str]]:
    """(method, target) of every HTTP request tshark decodes, in order."""
    methods, uris = tshark_fields(
        pcap, port, "http.request", "http.request.method", "http.request.uri"
    )
    return list(zip(methods, uris, strict=True))


def tshark_check(pcap: Path, port: int, seen: list[Seen]) -> int:
    frames = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},http", "-Y", "http.request"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    frame_count = len(frames.splitlines())
    requests = tshark_requests(pcap, port)
    want = [(s.method, s.target) for s in seen]
    if requests != want:
        raise SystemExit(f"tshark saw requests {requests}\nclients sent {want}")
    (codes,) = tshark_fields(pcap, port, "http.response", "http.response.code")
    statuses = [int(c) for c in codes]
    if statuses != [s.status for s in seen]:
        raise SystemExit(f"tshark saw statuses {statuses}, clients got {[s.status for s in seen]}")
    return frame_count


def main() -> int:
    for tool in ("tcpdump", "tshark", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="wt-record-") as work:
        return record(Path(work) / "capture.pcap")


def record(tmp: Path) -> int:
    server, port = start_server()
    try:
        dump = start_tcpdump(port, tmp)
        try:
            time.sleep(0.3)
            seen = drive_clients(port)
            time.sleep(0.5)  # let the last FIN/ACKs reach the capture
        finally:
            stop_tcpdump(dump)
    finally:
        server.terminate()
        server.wait(timeout=10)
    os.chmod(tmp, 0o644)
    size = tmp.stat().st_size
    if size >= MAX_PCAP_BYTES:
        raise SystemExit(f"capture is {size} bytes, over the {MAX_PCAP_BYTES} byte budget")
    frames = tshark_check(tmp, port, seen)
    calls = [s.expected(port) for s in seen]
    shutil.copyfile(tmp, PCAP)
    EXPECTED.write_text(json.dumps(calls, indent=2, ensure_ascii=False) + "\n")
    print(
        f"wrote {PCAP.name} ({size} bytes, server port {port}) and {EXPECTED.name} "
        f"({len(calls)} calls); tshark: {len(calls)} requests in {frames} frames, "
        f"statuses match"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        raise SystemExit(main())
