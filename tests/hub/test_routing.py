"""While a tap owns the data dir (embedded chDB has one owner), `wiretide query` and
`export` go through the hub it serves (advertised in <data>/hub.json) and print what they
would print reading directly; once the tap is over they read directly again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import urlopen

import httpx
import pytest

from producers.pcap import read_segments
from tests.conftest import ROOT, pipeline_env, run_wiretide
from tests.hub.conftest import PCAP
from wiretide.hub.client import find_hub

pytestmark = pytest.mark.timeout(600)
HTTP_PORT = 23870  # this module's loopback port (23870-23879)


def ui_env(kafka: str, data: Path) -> dict[str, str]:
    env = pipeline_env(kafka, data)
    env.pop("DISPLAY", None)  # no browser in tests
    env.pop("WAYLAND_DISPLAY", None)
    return env


def start_tap(env: dict[str, str], *args: str, until: str) -> tuple[subprocess.Popen, list[str]]:
    """`wiretide tap ARGS` running; returns once stderr says `until` (and what it said)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "tap", *args], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said = []
    for line in proc.stderr:
        said.append(line.rstrip("\n"))
        if until in line:
            return proc, said
    proc.wait(60)
    raise AssertionError(f"tap exited {proc.returncode}:\n" + "\n".join(said))


def interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{out}\n{err}"
    assert "Traceback" not in out + err
    return out, err


def query(env: dict[str, str], *args: str) -> list[dict]:
    proc = run_wiretide(["query", "--json", *args], env)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_keep_ui_serves_query_and_export_until_ctrl_c(kafka: str, tmp_path: Path) -> None:
    env = ui_env(kafka, tmp_path / "data")
    data = Path(env["WIRETIDE_DATA"])
    tap, said = start_tap(
        env, "--pcap", str(PCAP), "--quiet", "--ui-port", "0", "--keep-ui", until="Ctrl-C stops"
    )
    try:
        ui = [line for line in said if line.startswith("UI: http://localhost:")]
        assert len(ui) == 2  # while tapping, then kept
        url = ui[-1].split()[1]
        hub = find_hub(data)
        assert hub is not None and hub.pid == tap.pid  # the tap itself serves it now
        assert httpx.get(f"{url}/readyz", timeout=30).json()["status"] == "ready"
        via_hub = run_wiretide(["query", "--json"], env).stdout
        lines = run_wiretide(["query", "http and response.status >= 400"], env).stdout
        bad = run_wiretide(["query", "response.status =="], env, check=False)
        run_wiretide(["export", "--pcap", str(tmp_path / "hub.pcap"), "http"], env)
    finally:
        interrupt(tap)
    assert not (data / "hub.json").exists()
    calls = [json.loads(line) for line in via_hub.splitlines()]
    assert len(calls) == 17
    # The same answers reading directly.
    assert run_wiretide(["query", "--json"], env).stdout == via_hub
    assert run_wiretide(["query", "http and response.status >= 400"], env).stdout == lines
    again = run_wiretide(["query", "response.status =="], env, check=False)
    assert bad.returncode == again.returncode == 2 and bad.stderr == again.stderr
    run_wiretide(["export", "--pcap", str(tmp_path / "direct.pcap"), "http"], env)
    assert (tmp_path / "hub.pcap").read_bytes() == (tmp_path / "direct.pcap").read_bytes()


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hello_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", HTTP_PORT), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{HTTP_PORT}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
def test_query_during_a_live_tap_goes_through_its_hub(
    kafka: str, tmp_path: Path, hello_server: str
) -> None:
    env = ui_env(kafka, tmp_path / "data")
    data = Path(env["WIRETIDE_DATA"])
    args = ["-i", "lo", "--port", str(HTTP_PORT), "--ui-port", "0", "--quiet"]
    # Capture starts at once; the UI is announced once the pipeline serves it.
    tap, said = start_tap(env, *args, until="UI: http://localhost:")
    try:
        assert any(line.startswith("capturing on ") for line in said[:-1]), said
        hub = find_hub(data)
        assert hub is not None and hub.pid != tap.pid  # the sink process serves it
        paths = [f"/hello/{i}" for i in range(3)]
        for path in paths:
            with urlopen(hello_server + path, timeout=30) as response:  # noqa: S310
                assert response.read() == f"hello {path}".encode()
        kfl = 'request.path.startsWith("/hello/")'
        while len(during := query(env, kfl)) < len(paths):  # each query must succeed
            assert tap.poll() is None
        assert find_hub(data) is not None  # still owned by the tap all along
        out = tmp_path / "live.pcap"
        run_wiretide(["export", "--pcap", str(out), kfl], env)
        exported = b"".join(seg.payload for seg in read_segments(str(out)))
        assert all(f"GET {path} HTTP/1.1".encode() in exported for path in paths)
    finally:
        out_text, _ = interrupt(tap)
    assert "stored" in out_text
    assert not (data / "hub.json").exists()
    assert sorted(c["request"]["path"] for c in during) == paths
    after = query(env, kfl)  # now directly from the store
    assert [c["id"] for c in after] == [c["id"] for c in during]


def test_query_goes_through_a_standalone_hub_that_owns_the_data_dir(hub, stored_env, all_calls):
    """`wiretide hub` holds the embedded store; `wiretide query` on the same data dir
    asks it instead of failing on the lock, and prints the same calls."""
    from tests.conftest import run_wiretide

    proc = run_wiretide(["query", "--json"], stored_env)
    ids = [json.loads(line)["id"] for line in proc.stdout.splitlines()]
    assert sorted(ids) == sorted(c["id"] for c in all_calls)
