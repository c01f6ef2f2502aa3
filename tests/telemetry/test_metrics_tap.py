"""`wiretide tap --keep-ui` on one machine: after the capture is stored, the hub it keeps
serving adds up the counters of every process the tap ran (its workers and writer, which
have ended); a new tap starts its own at zero. (The RED metrics of the stored calls are
tests/telemetry/test_metrics_e2e.py's: the kept hub reads chDB in the tap's process.)"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.telemetry.metrics_support import (  # noqa: F401 (cluster_pcap: a fixture)
    cluster_pcap,
    count,
    env_with_endpoints,
    scrape,
    stored_calls,
    total,
)

pytestmark = pytest.mark.timeout(900)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tap_and_scrape(env: dict[str, str], pcap) -> dict[str, list]:  # noqa: ANN001
    """Tap `pcap` keeping the UI; /metrics once the UI is kept; then Ctrl-C."""
    port = _free_port()
    tap = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "tap", "--quiet", "--pcap", str(pcap),
         "--keep-ui", "--ui-port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said = []
    try:
        for line in tap.stderr:
            said.append(line)
            # The kept UI's line (the one at start-up is the writer's, mid-capture).
            if line.startswith("UI: http://localhost:") and "Ctrl-C stops it" in line:
                return scrape(f"http://127.0.0.1:{port}/metrics")
        raise AssertionError(f"tap exited {tap.wait()} without keeping the UI: {''.join(said)}")
    finally:
        tap.send_signal(signal.SIGINT)
        tap.communicate(timeout=120)


def test_kept_hub_adds_up_the_taps_workers_and_writer(kafka, cluster_pcap, tmp_path):  # noqa: F811
    env = env_with_endpoints(kafka, tmp_path / "data")
    first = _tap_and_scrape(env, cluster_pcap)
    calls = stored_calls(env)
    per_protocol = count(calls, lambda c: (c["protocol"],))
    emitted = total(first["wiretide_worker_calls"], "wiretide_worker_calls_total", ("protocol",))
    assert emitted == per_protocol
    assert total(first["wiretide_sink_rows"], "wiretide_sink_rows_total")[()] == len(calls)
    # The kept hub reads the store the writer filled: every stored call in its RED totals.
    assert total(first["wiretide_calls"], "wiretide_calls_total")[()] == len(calls)
    unanswered = count(
        [c for c in calls if "no_response" in c["flags"]], lambda c: (c["protocol"],)
    )
    got = total(
        first["wiretide_worker_requests_without_response"],
        "wiretide_worker_requests_without_response_total",
        ("protocol",),
    )
    assert got == unanswered and unanswered

    # The same capture again: stored again (the table collapses it), and counted from
    # zero by the new tap's processes.
    again = _tap_and_scrape(env, cluster_pcap)
    assert total(again["wiretide_sink_rows"], "wiretide_sink_rows_total")[()] == len(calls)
    emitted = total(again["wiretide_worker_calls"], "wiretide_worker_calls_total", ("protocol",))
    assert emitted == per_protocol
