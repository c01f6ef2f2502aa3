"""A cold `wiretide tap` (a data dir whose broker never ran) says what it waits for from
the start, captures before its pipeline is up, and stores the calls it captured meanwhile
as well as the later ones: none is lost while the broker, workers and sink start."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_wiretide

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.timeout(600),
]


class _Json(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _calls(port: int, paths: list[str]) -> None:
    for path in paths:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()


def _until(stream, prefix: str, seen: list[str]) -> str:  # noqa: ANN001
    for line in stream:
        seen.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return line
    raise AssertionError(f"the tap ended before a line {prefix!r}:\n" + "\n".join(seen))


def test_a_cold_tap_captures_at_once_and_stores_what_it_captured_while_starting(
    tmp_path: Path,
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Json)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_port
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRETIDE_")}
    env.update(WIRETIDE_DATA=str(data), HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "tap", "-i", "lo", "--port", str(port), "--no-ui"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        _until(proc.stderr, "capturing on ", seen)
        early = [f"/early/{i}" for i in range(5)]
        _calls(port, early)  # the broker of a fresh data dir takes seconds: not up yet
        ready = _until(proc.stderr, "tap: pipeline ready after ", seen)
        _calls(port, ["/late/0", "/late/1", "/late/2"])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.shutdown()
        server.server_close()
        run_wiretide(["broker", "stop", "--data", str(data)], env, check=False)
    assert proc.returncode == 0, "\n".join(seen) + err
    said = seen[: seen.index(next(s for s in seen if s.startswith("capturing on ")))]
    assert any(s.startswith("tap: waiting for the Kafka broker at 127.0.0.1:") for s in said), seen
    handed = re.search(r"; (\d+) segments captured meanwhile handed over", ready)
    assert handed and int(handed.group(1)) > 0, ready
    stored = re.search(r"^stored (\d+) calls in ", out, re.MULTILINE)
    assert stored and int(stored.group(1)) == len(early) + 3, out + err
