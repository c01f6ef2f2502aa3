"""Record the HTTP/2 golden capture: curl (nghttp2) with prior knowledge against hypercorn
(the ASGI app in server.py) on loopback port 21050, captured with tcpdump.

    /tmp/v/bin/pip install hypercorn   # recording only, not a runtime need
    /tmp/v/bin/python tests/golden/protocols/http2/record.py

One connection per request for a GET with a query, a POST with a JSON body and a gzip
response, then one connection carrying three requests at once (curl --parallel), one of
them a 404. What curl sent and got is written to basic.facts.json; then regenerate the
expected calls and review them against the facts:

    python -m tests.golden.protocols.dissect tests/golden/protocols/http2/basic.pcap --write
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PORT = 21050
BASE = f"http://127.0.0.1:{PORT}"
PCAP = HERE / "basic.pcap"
FACTS = HERE / "basic.facts.json"
POST_BODY = '{"item":"widget","qty":2}'

# (method, target, curl options) per connection; a list of several shares one connection.
SESSIONS: list[list[tuple[str, str, list[str]]]] = [
    [("GET", "/hello?name=wire&lang=en", [])],
    [("POST", "/echo", ["-H", "content-type: application/json", "-d", POST_BODY])],
    [("GET", "/gzip", ["--compressed"])],
    [("GET", "/item/1", []), ("GET", "/item/2", []), ("GET", "/nope", [])],
]


def start_server() -> subprocess.Popen:
    hypercorn = Path(sys.executable).with_name("hypercorn")
    proc = subprocess.Popen(
        [str(hypercorn), "server:app", "--bind", f"127.0.0.1:{PORT}"],
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):  # poll before the capture starts, so the probes are not in it
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("hypercorn did not start")


def start_tcpdump(pcap: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-Z", "root", "-s", "0", "-w", str(pcap)]
        + [f"tcp port {PORT}"],
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.readline()  # "listening on lo, ..." once the filter is in place
    return proc


def run_curl(session: list[tuple[str, str, list[str]]], tmp: Path) -> list[dict[str, Any]]:
    args = ["curl", "-sS", "--http2-prior-knowledge"]
    if len(session) > 1:
        args += ["--parallel", "--parallel-immediate", "--parallel-max", "10"]
    outs = []
    for k, (_method, target, opts) in enumerate(session):
        out = tmp / f"body{len(list(tmp.iterdir()))}-{k}"
        outs.append(out)
        args += [*opts, "-o", str(out), "-w", "%{http_code} %{http_version}\\n", BASE + target]
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


def main() -> None:
    for tool in ("tcpdump", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    server = start_server()
    try:
        dump = start_tcpdump(PCAP)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                facts = [run_curl(s, Path(tmp)) for s in SESSIONS]
        finally:
            time.sleep(1)  # let the last FIN reach the capture
            dump.terminate()
            dump.wait()
    finally:
        server.terminate()
        server.wait()
    FACTS.write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {PCAP.name} ({PCAP.stat().st_size} bytes) and {FACTS.name}")


if __name__ == "__main__":
    main()
