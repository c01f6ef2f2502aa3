"""Record lenient.pcap: requests that are not strict HTTP/1.1 (raw UTF-8 in the target,
header names that are not tokens, bare LF line endings in heads and chunk lines, obs-fold,
a control byte in a value, HTTP/1.2, a space in the target), sent by a raw socket client
to a throwaway nginx (which serves most, and answers the rest with 400) and captured on
lo with tcpdump. tests/streams/test_http.py compares our calls with tshark's.

    .venv/bin/python tests/golden/http/lenient_record.py     (as root)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo, run as a script
from tests.golden.protocols.recording import tcpdump, wait_port  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21580
HOST = b"Host: golden\r\n"

# One request per connection, in this order; each says `Connection: close`.
REQUESTS = [
    "GET /caf\u00e9/\u00fcber?q=\u00e4 HTTP/1.1\r\n".encode() + HOST + b"Connection: close\r\n\r\n",
    b"GET /paren HTTP/1.1\r\n" + HOST + b"X-Odd(Name): 1\r\nConnection: close\r\n\r\n",
    b"GET /bare-lf HTTP/1.1\n" + HOST[:-2] + b"\nX-Lf: yes\nConnection: close\n\n",
    b"GET /folded HTTP/1.1\r\n" + HOST + b"X-Fold: one\r\n two\r\nConnection: close\r\n\r\n",
    b"POST /ctl HTTP/1.1\r\n" + HOST + b"X-Ctl: a\x01b\r\nContent-Length: 5\r\n"
    b"Connection: close\r\n\r\nhello",
    "GET /utf8-name HTTP/1.1\r\nX-\u00dc: 1\r\n".encode() + HOST + b"Connection: close\r\n\r\n",
    b"GET /v12 HTTP/1.2\r\n" + HOST + b"Connection: close\r\n\r\n",
    b"POST /chunked-lf HTTP/1.1\nHost: golden\nTransfer-Encoding: chunked\nConnection: close\n\n"
    b"5\nhello\n6\n world\n0\n\n",
    b"GET /a b HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",  # nginx: 400
    b"GET /strict HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",
]

CONF = """
daemon off; master_process off; worker_processes 1; user root;
error_log {dir}/error.log; pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off; server_tokens off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "served $uri\\n"; }} }}
}}
"""


def send(request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("lenient_record.py: run as root (tcpdump on lo)")
    tmp = Path(tempfile.mkdtemp(prefix="wiretide-lenient-"))
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.format(dir=tmp, port=PORT))
    proc = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)])
    pcap = HERE / "lenient.pcap"
    try:
        wait_port(PORT)
        with tcpdump(pcap, f"tcp port {PORT}"):
            for request in REQUESTS:
                status = send(request).split(b"\r\n", 1)[0]
                print(request.split(b"\n", 1)[0].decode(errors="replace").strip(), "->", status)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {pcap} ({pcap.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
