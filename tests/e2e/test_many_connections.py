"""A many-connection capture, end to end: hundreds of short HTTP/1.1 connections (nginx
closes each after a few calls, wrk opens the next; bench/make_capture.sh --per-connection,
recorded at test time) replayed by `wiretide tap --pcap` with its default worker count
store exactly the calls tshark dissects from the same file, each once, each answered, on
every connection. Not timed: bench/e2e.py measures the same on a large capture."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from bench.e2e import run_tshark, scan_capture
from tests.conftest import ROOT, needs
from tests.e2e.test_tap_golden import BAD_FLAGS, _query, _stored_count, _tap
from tests.golden.e2e.record import tshark_fields

pytestmark = [needs("nginx"), needs("wrk"), needs("tcpdump"), needs("tshark")]

CALLS = 4000
PER_CONNECTION = 10  # so 400 connections, 4 open at a time


@pytest.fixture(scope="module")
def many_connections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capture") / "many.pcap"
    subprocess.run(
        ["bash", str(ROOT / "bench" / "make_capture.sh"), "--calls", str(CALLS),
         "--per-connection", str(PER_CONNECTION), str(out), "30", "4"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out


def calls_per_connection(pcap: Path, port: int) -> Counter[int]:
    """tshark's HTTP requests per client port (wrk does not pipeline: one a frame)."""
    (ports,) = tshark_fields(pcap, port, "http.request", "tcp.srcport")
    return Counter(int(p) for p in ports)


def connections_opened(pcap: Path) -> int:
    """SYNs without ACK, as tshark counts them."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return len(out.splitlines())


def test_tap_stores_tsharks_calls_of_hundreds_of_short_connections(
    many_connections: Path, wt_env: dict[str, str]
) -> None:
    cap = scan_capture(many_connections)
    reference = run_tshark(shutil.which("tshark"), cap, cap.server_ports)
    (port,) = cap.server_ports
    per_connection = calls_per_connection(many_connections, port)
    assert reference.calls == CALLS == sum(per_connection.values())
    assert len(per_connection) >= CALLS // PER_CONNECTION, "a many-connection capture"
    assert connections_opened(many_connections) >= len(per_connection)

    proc = _tap(many_connections, wt_env)  # no --workers: one per core
    workers = os.cpu_count() or 1
    assert f"tap: {workers} stream workers" in proc.stdout, proc.stdout
    assert _stored_count(proc) == reference.calls, proc.stdout

    calls = _query(wt_env)
    assert len(calls) == reference.calls
    assert len({c["id"] for c in calls}) == len(calls), "a call stored twice"
    incomplete = [c for c in calls if BAD_FLAGS & set(c["flags"])]
    assert not incomplete, incomplete[:3]
    stored_per_connection = Counter(c["src"]["port"] for c in calls)
    assert stored_per_connection == per_connection, "each connection's calls, all of them"
