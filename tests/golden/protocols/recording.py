"""What every golden recorder does around its clients: wait for the server to listen,
then capture loopback with tcpdump and a port filter while the clients run, and stop the
capture once the last segments are in; and, for most, the server they run against and
the facts file the clients' side writes."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"record.py: nothing listens on 127.0.0.1:{port} after {timeout:g} s")


@contextmanager
def tcpdump(pcap: Path, bpf: str, settle: float = 0.0, drain: float = 1.0) -> Iterator[None]:
    """Capture loopback packets matching `bpf` into `pcap` while the block runs. Enters
    once tcpdump listens (and `settle` seconds more); on leaving, waits `drain` seconds
    for the last segments, then stops tcpdump with SIGINT so it flushes the file."""
    if shutil.which("tcpdump") is None:
        raise SystemExit("record.py: tcpdump is not installed (apt-get install tcpdump)")
    args = ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-Z", "root", "-s", "0"]
    proc = subprocess.Popen([*args, "-w", str(pcap), bpf], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on lo, ..." once the filter is in place
    if "listening" not in line:
        proc.kill()
        proc.wait()
        raise SystemExit(f"record.py: tcpdump did not start: {line.strip()}")
    time.sleep(settle)
    try:
        yield
    finally:
        time.sleep(drain)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


@contextmanager
def serving(
    args: list[str], port: int | None = None, timeout: float = 10.0, **popen: Any
) -> Iterator[subprocess.Popen]:
    """The server `args` runs for the length of the block (entered once it listens on
    `port`, when given), and is terminated and waited for however the block ends."""
    server = subprocess.Popen(args, **popen)
    try:
        if port is not None:
            wait_port(port, timeout)
        yield server
    finally:
        server.terminate()
        server.wait()


def write_client_facts(path: Path, facts: list[dict], pcap: Path) -> None:
    """What the clients saw, next to the capture they made."""
    path.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {pcap} ({pcap.stat().st_size} bytes) and {len(facts)} client facts")
