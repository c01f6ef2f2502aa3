"""Record the HTTP/2 golden capture: curl (nghttp2) with prior knowledge against hypercorn
(the ASGI app in server.py) on loopback port 21050 and nginx on 21051, captured with
tcpdump.

    /tmp/v/bin/pip install hypercorn   # recording only, not a runtime need
    apt-get install nginx-light nghttp2-client   # nginx built --with-http_v2_module
    /tmp/v/bin/python tests/golden/protocols/http2/record.py

One curl connection per request to hypercorn for a GET with a query, a POST with a JSON
body and a gzip response, then one nghttp connection to nginx carrying three requests
at once (with nghttp's PRIORITY tree of idle streams), one of them a 404. curl 7.88 fails
a second request on one prior-knowledge connection ("Error in the HTTP2 framing
layer"), hence nghttp for multiplexing. What the clients sent and got is written to
basic.facts.json; then regenerate the expected calls and review them against the facts:

    python -m tests.golden.protocols.dissect tests/golden/protocols/http2/basic.pcap --write
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import tcpdump  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21050
NGINX_PORT = 21051
BASE = f"http://127.0.0.1:{PORT}"
NGINX_BASE = f"http://127.0.0.1:{NGINX_PORT}"
NGINX_CONF = """daemon off; master_process off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{
    listen 127.0.0.1:{port} http2;
    location /item/ {{ default_type application/json; return 200 '{{"item": "$uri"}}'; }}
    location / {{ return 404; }}
  }}
}}
"""
PCAP = HERE / "basic.pcap"
FACTS = HERE / "basic.facts.json"
POST_BODY = '{"item":"widget","qty":2}'

# (base, [(method, target, curl options)]) per connection.
SESSIONS: list[tuple[str, list[tuple[str, str, list[str]]]]] = [
    (BASE, [("GET", "/hello?name=wire&lang=en", [])]),
    (BASE, [("POST", "/echo", ["-H", "content-type: application/json", "-d", POST_BODY])]),
    (BASE, [("GET", "/gzip", ["--compressed"])]),
]
MULTIPLEXED = ["/item/1", "/item/2", "/nope"]  # one nghttp connection to nginx
_NGHTTP_ROW = re.compile(r"^\s*\d+\s+\S+\s+\S+\s+\S+\s+(\d{3})\s+(\d+)\s+(\S+)\s*$", re.M)


def start_server(args: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(args, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):  # poll before the capture starts, so the probes are not in it
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"{args[0]} did not start on port {port}")


def run_curl(base: str, session: list[tuple[str, str, list[str]]], tmp: Path) -> list[dict]:
    args = ["curl", "-sS", "--http2-prior-knowledge"]
    if len(session) > 1:
        args += ["--parallel", "--parallel-max", "10"]
    outs = []
    for k, (_method, target, opts) in enumerate(session):
        out = tmp / f"body{len(list(tmp.iterdir()))}-{k}"
        outs.append(out)
        args += [*opts, "-o", str(out), "-w", "%{http_code} %{http_version}\\n", base + target]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    codes = sorted(proc.stdout.split("\n")[: len(session)])  # --parallel: completion order
    facts = []
    for (method, target, opts), out in zip(session, outs, strict=True):
        facts.append(
            {
                "method": method,
                "target": target,
                "request_body": POST_BODY if "-d" in opts else "",
                "response_body": out.read_text(),
            }
        )
    facts[0]["versions"] = sorted({c.split()[1] for c in codes})
    facts[0]["statuses"] = sorted(int(c.split()[0]) for c in codes)
    return facts


def run_nghttp(targets: list[str]) -> list[dict[str, Any]]:
    """Requests multiplexed on one connection; facts from nghttp's statistics table."""
    args = ["nghttp", "-n", "-s", *(NGINX_BASE + t for t in targets)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = {path: (int(code), int(size)) for code, size, path in _NGHTTP_ROW.findall(out)}
    return [
        {"method": "GET", "target": t, "status": rows[t][0], "response_body_size": rows[t][1]}
        for t in targets
    ]


def main() -> None:
    for tool in ("tcpdump", "curl", "nginx", "nghttp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    hypercorn = str(Path(sys.executable).with_name("hypercorn"))
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=NGINX_PORT))
        servers = [
            start_server([hypercorn, "server:app", "--bind", f"127.0.0.1:{PORT}"], PORT),
            start_server(["nginx", "-c", str(conf), "-p", tmp], NGINX_PORT),
        ]
        try:
            with tcpdump(PCAP, f"tcp portrange {PORT}-{NGINX_PORT}"):
                bodies = Path(tmp) / "bodies"
                bodies.mkdir()
                facts = [run_curl(base, s, bodies) for base, s in SESSIONS]
                facts.append(run_nghttp(MULTIPLEXED))
        finally:
            for server in servers:
                server.terminate()
                server.wait()
    FACTS.write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {PCAP.name} ({PCAP.stat().st_size} bytes) and {FACTS.name}")


if __name__ == "__main__":
    main()
