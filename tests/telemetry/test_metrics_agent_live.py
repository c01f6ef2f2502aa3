"""The node agent's /metrics while it captures live (root): pods stand in as network
namespaces on a host bridge, curl calls a real HTTP server, `wiretide agent
--metrics-port` captures the server pod's interface. Packets seen, segments published
and kernel drops show up per node, and never exceed what the agent reports at exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.test_live_tap import curl
from tests.producers.test_afpacket import Lan, lan, start_server, stop_server  # noqa: F401
from tests.telemetry.metrics_support import scrape, total

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.timeout(600),
]

PORTS = iter(range(21780, 21790))  # this module's share of 21700-21799
CAPTURED_RE = re.compile(r"^captured (\d+) packets \((\d+) segments\)", re.MULTILINE)


def test_agent_counts_packets_segments_and_drops_per_node(lan: Lan, wt_env, tmp_path):  # noqa: F811
    srv, _ = lan.add_pod("s"), lan.add_pod("c")
    port, metrics_port = next(PORTS), next(PORTS)
    env = {**wt_env, "WIRETIDE_NODE": "node-under-test"}
    server = start_server(srv, port, lan.netns("s"))
    log = (tmp_path / "agent.log").open("w+")
    agent = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "agent", "--interface", lan.host_veth("s"),
         "--port", str(port), "--metrics-port", str(metrics_port)],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        deadline, seen = time.monotonic() + 180, {}
        while time.monotonic() < deadline:  # generous: a busy machine
            assert agent.poll() is None, log.seek(0) or log.read()
            curl(lan.netns("c"), f"http://{srv}:{port}/metrics-test")
            try:
                seen = scrape(url)
            except (httpx.HTTPError, AssertionError):
                seen = {}
            published = seen.get("wiretide_segments_published", [])
            if total(published, "wiretide_segments_published_total").get((), 0) >= 10:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"no segments counted in time: {sorted(seen)}")
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        agent.wait(120)
        stop_server(server)
    log.seek(0)
    out = log.read()
    by_node = ("node",)
    packets = total(seen["wiretide_capture_packets"], "wiretide_capture_packets_total", by_node)
    segments = total(
        seen["wiretide_segments_published"], "wiretide_segments_published_total", by_node
    )
    dropped = seen.get("wiretide_capture_kernel_drops", [])
    drops = total(dropped, "wiretide_capture_kernel_drops_total", by_node)
    assert set(packets) == set(segments) == {("node-under-test",)}
    assert drops.get(("node-under-test",), 0) == 0
    final = CAPTURED_RE.search(out)
    assert final, out
    assert 0 < packets[("node-under-test",)] <= int(final.group(1))
    assert 10 <= segments[("node-under-test",)] <= int(final.group(2))
