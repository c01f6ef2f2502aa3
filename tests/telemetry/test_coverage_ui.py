"""The UI's Coverage page in headless Chromium, over a hub whose store holds a TLS flow
seen only encrypted (a capture replayed by `wiretide tap --pcap`) and whose coverage
topic holds two nodes' records: one with TLS on (a hooked OpenSSL process in a pod, a
stripped Go binary not hooked), one where TLS could not start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.pcap_writer import PcapWriter
from schemas.config import Settings
from schemas.coverage import NodeCoverage, TlsProcess
from schemas.records import ACK, FIN, PSH, SYN, Segment
from tests.conftest import CHROMIUM, pipeline_env, run_wiretide
from tests.hub.conftest import Hub, start_hub
from tests.ui.conftest import UI_DIST
from wiretide.coverage import CoveragePublisher

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing"),
    pytest.mark.skipif(not UI_DIST.is_file(), reason="UI not built: cd ui && npm run build"),
]
CLIENT, SERVER = ("10.9.0.1", 40001), ("10.9.0.2", 443)
HELLO = b"\x16\x03\x01\x00\x40" + b"\x01" * 0x40  # a TLS record: handshake, 3.1
ANSWER = b"\x16\x03\x03\x00\x60" + b"\x02" * 0x60
STRIPPED = "stripped Go binary (no symbol table to find crypto/tls in)"
NO_TRACEFS = "tracefs is not mounted at /sys/kernel/tracing"


def _encrypted_flow(path: Path) -> None:
    t0 = int(time.time() * 1e9)
    (cip, cport), (sip, sport) = CLIENT, SERVER

    def seg(i: int, to_server: bool, seq: int, ack: int, flags: int, data: bytes = b"") -> Segment:
        if to_server:
            return Segment(t0 + i * 1000, cip, cport, sip, sport, seq, ack, flags, data)
        return Segment(t0 + i * 1000, sip, sport, cip, cport, seq, ack, flags, data)

    c, s = 1000, 5000
    segments = [
        seg(0, True, c, 0, SYN),
        seg(1, False, s, c + 1, SYN | ACK),
        seg(2, True, c + 1, s + 1, ACK),
        seg(3, True, c + 1, s + 1, PSH | ACK, HELLO),
        seg(4, False, s + 1, c + 1 + len(HELLO), PSH | ACK, ANSWER),
        seg(5, True, c + 1 + len(HELLO), s + 1 + len(ANSWER), FIN | ACK),
        seg(6, False, s + 1 + len(ANSWER), c + 2 + len(HELLO), FIN | ACK),
    ]
    w = PcapWriter()
    path.write_bytes(w.header() + b"".join(w.packets(x) for x in segments))


@pytest.fixture(scope="module")
def coverage_hub(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    top = tmp_path_factory.mktemp("coverage-ui")
    env = pipeline_env(kafka, top / "data")
    _encrypted_flow(top / "tls.pcap")
    run_wiretide(["tap", "--pcap", str(top / "tls.pcap"), "--quiet", "--no-ui"], env)
    settings = Settings(kafka=kafka, prefix=env["WIRETIDE_PREFIX"])
    now = time.time_ns()
    hooked = TlsProcess(
        4242,
        "api",
        "OpenSSL",
        True,
        "3.0.19",
        "/usr/lib/libssl.so.3",
        pod="api-1",
        namespace="shop",
    )
    bare = TlsProcess(
        4343, "tool", "Go", False, "1.26.8", "/usr/bin/tool", STRIPPED, "/usr/bin/tool"
    )
    on = NodeCoverage(
        "node-a", now, ("afpacket", "tls-uprobes"), "lo", "on", "", 900, 3, 2048, (hooked, bare)
    )
    off = NodeCoverage("node-b", now, ("afpacket",), "eth0", "unavailable", NO_TRACEFS, 50, 0)
    publisher = CoveragePublisher(settings)
    publisher.publish(on)
    publisher.publish(off)
    publisher.flush()
    hub = start_hub(env)
    yield hub
    hub.stop()


def test_coverage_page_shows_each_node_process_and_undecrypted_flow(
    page,  # noqa: F811
    coverage_hub: Hub,
) -> None:
    page.goto(coverage_hub.url + "/")
    page.get_by_test_id("tab-coverage").click()
    nodes = page.get_by_test_id("coverage-node")
    nodes.first.wait_for()
    assert [nodes.nth(i).get_attribute("data-node") for i in range(nodes.count())] == [
        "node-a",
        "node-b",
    ]
    a = page.locator('[data-node="node-a"]')
    assert a.get_by_test_id("sources").inner_text() == "AF_PACKET, TLS uprobes on lo"
    assert "1 hooked, 1 not" in a.get_by_test_id("tls-counts").inner_text()
    hooked = a.locator('[data-testid="tls-process"][data-pid="4242"]')
    assert hooked.get_attribute("data-hooked") == "true"
    assert "OpenSSL 3.0.19" in hooked.inner_text() and "shop/api-1" in hooked.inner_text()
    missed = a.locator('[data-testid="tls-process"][data-pid="4343"]')
    assert missed.get_attribute("data-hooked") == "false"
    assert STRIPPED in missed.inner_text()
    b = page.locator('[data-node="node-b"]')
    assert NO_TRACEFS in b.get_by_test_id("tls-problem").inner_text()
    # The replayed capture's flow is no reporting node's: it shows in the totals and
    # under the captures without a report, not under node-a or node-b.
    assert a.get_by_test_id("undecrypted").get_attribute("data-flows") == "0"
    assert page.get_by_test_id("undecrypted-total").get_attribute("data-flows") == "1"
    row = page.get_by_test_id("coverage-elsewhere").get_by_test_id("undecrypted-flow")
    assert row.inner_text().split("\t")[:3] == ["10.9.0.1", "10.9.0.2:443", "1"]
    pods = page.get_by_test_id("coverage-pod")
    assert pods.first.get_attribute("data-pod") == "shop/api-1"
    assert "1 of 1" in pods.first.inner_text()
