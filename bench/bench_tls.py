"""TLS capture under HTTPS load: requests/s with and without capture, and chunks/s.

    sudo python bench/bench_tls.py [--requests 3000] [--connections 4] [--body 2000]

A Python (OpenSSL) HTTPS server and a client process on loopback (ports 21840-21842); the
client sends `--requests` POSTs over `--connections` keep-alive connections. Runs the
load once without capture (reference) and once with TlsCapture tracing both processes
(this process polls the ring buffer meanwhile), then feeds the captured segments through
the pipeline and checks every call came out. Prints both rates, the overhead, the capture's
chunk and byte rates and its drop counters.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producers.tls import TlsCapture  # noqa: E402
from streams.dissect.registry import default_registry  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.redact import RedactionPolicy  # noqa: E402

SERVER = r"""
import http.server, socketserver, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"""

CLIENT = r"""
import http.client, ssl, sys, threading, time
port, cafile, total, conns, size = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
ctx = ssl.create_default_context(cafile=cafile)
body = b"b" * size
print("ready", flush=True)
sys.stdin.readline()
def run(n):
    c = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx)
    for _ in range(n):
        c.request("POST", "/load", body=body)
        c.getresponse().read()
    c.close()
start = time.perf_counter()
threads = [threading.Thread(target=run, args=(total // conns,)) for _ in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
print(time.perf_counter() - start, flush=True)
"""


def spawn(argv: list[str]) -> subprocess.Popen[str]:
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def run_load(
    args: argparse.Namespace, crt: str, key: str, port: int, capture: bool, defer: bool = False
) -> dict:
    """One load run; with `defer`, the ring buffer is read only after the load (so the
    figure is the in-kernel cost alone, without this process competing for CPU)."""
    server = spawn([sys.executable, "-c", SERVER, str(port), crt, key])
    client = spawn(
        [sys.executable, "-c", CLIENT, str(port), crt]
        + [str(args.requests), str(args.connections), str(args.body)]
    )
    segments = []
    pages = 16384 if defer else 2048  # deferred: room for the whole load (64 MiB)
    cap = TlsCapture(pids=[server.pid, client.pid], ring_pages=pages) if capture else None
    try:
        if cap:
            cap.start()
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write("go\n")
        client.stdin.flush()
        drain_s = 0.0
        while client.poll() is None:
            if cap and not defer:
                segments += cap.poll(0.05)
            else:
                time.sleep(0.05)
        if cap:
            t = time.perf_counter()
            while batch := cap.poll(0.2):  # drain what is left
                segments += batch
            drain_s = time.perf_counter() - t
        elapsed = float(client.stdout.read().strip())
        stats = cap.stats() if cap else {}
    finally:
        if cap:
            cap.close()
        server.kill()
        server.wait()
    return {"elapsed": elapsed, "segments": segments, "stats": stats, "drain_s": drain_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--body", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        crt, key = f"{d}/cert.pem", f"{d}/key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            + ["-keyout", key, "-out", crt, "-subj", "/CN=localhost"]
            + ["-addext", "subjectAltName=IP:127.0.0.1"],
            check=True,
            capture_output=True,
        )
        base = run_load(args, crt, key, 21840, capture=False)
        traced = run_load(args, crt, key, 21841, capture=True)
        kernel = run_load(args, crt, key, 21842, capture=True, defer=True)
    n = args.requests // args.connections * args.connections
    st = traced["stats"]
    pipe = Pipeline(default_registry(), RedactionPolicy.default())
    calls = pipe.process(1, traced["segments"]).calls + pipe.finish().calls
    ok = sum(1 for c in calls if c.tls and c.status == 200 and len(c.request_body) == args.body)
    ks = kernel["stats"]
    rows = [
        ("without capture", base["elapsed"]),
        ("with capture", traced["elapsed"]),
        ("probes only", kernel["elapsed"]),
    ]
    print(f"HTTPS load: {n} POSTs of {args.body} B over {args.connections} connections")
    for name, elapsed in rows:
        overhead = 100 * (elapsed / base["elapsed"] - 1)
        print(f"  {name + ':':17s}{n / elapsed:8.0f} req/s  ({overhead:+.1f}%)")
    print("  (probes only: the ring buffer is read after the load, so this process does not")
    print("   compete for CPU with it; the difference to 'with capture' is user-space decoding)")
    print(
        f"  user-space decode: {ks['chunks'] / kernel['drain_s']:.0f} chunks/s "
        f"({ks['chunks']} chunks, {ks['bytes'] / 1e6:.1f} MB in {kernel['drain_s']:.2f} s)"
    )
    print(
        f"  live: {st['chunks']} chunks ({st['chunks'] / traced['elapsed']:.0f}/s), drops: "
        f"ring_full={st['ring_full']} unresolved={st['unresolved']} no_fd={st['no_fd']}, "
        f"deferred ring_full={ks['ring_full']}; calls out of the pipeline: {ok}/{n}"
    )


if __name__ == "__main__":
    main()
