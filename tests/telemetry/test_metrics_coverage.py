"""The coverage facts the agents publish and the store's undecrypted TLS flows, as the
hub's gauges: which sources capture on each node, how many TLS processes of each library
were hooked or not and why not, and how much TLS was stored as ciphertext only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.coverage import CoverageReport, NodeCoverage, TlsProcess, UndecryptedFlows
from wiretide.hub.metrics import coverage_families


def _process(pid: int, library: str, hooked: bool, reason: str = "") -> TlsProcess:
    return TlsProcess(pid=pid, command=f"p{pid}", library=library, hooked=hooked, reason=reason)


def _scrape(report: CoverageReport) -> dict[str, dict[tuple, float]]:
    class Report:
        def collect(self):  # noqa: ANN202
            return coverage_families(report)

    registry = CollectorRegistry()
    registry.register(Report())
    text = generate_latest(registry).decode()
    return {
        f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
    }


def test_hooked_and_unhooked_processes_sources_and_undecrypted_flows_per_node():
    stripped = "stripped Go binary (no symbol table: build without -s -w)"
    report = CoverageReport.build(
        [
            NodeCoverage(
                "node-a",
                2,
                sources=("afpacket", "tls-uprobes"),
                tls="on",
                processes=(
                    _process(1, "OpenSSL", True),
                    _process(2, "OpenSSL", True),
                    _process(3, "Go", False, stripped),
                ),
            ),
            NodeCoverage("node-a", 1, sources=("afpacket",), tls="off"),  # older: replaced
            NodeCoverage("node-b", 5, sources=("afpacket",), tls="unavailable"),
        ],  # fmt: skip
        [
            UndecryptedFlows("node-a", "shop/front", "10.0.0.9:443", 3, 4096),
            UndecryptedFlows("node-a", "shop/cart", "10.0.0.9:443", 1, 100),
        ],  # fmt: skip
    )
    got = _scrape(report)
    sources = got["wiretide_capture_source_info"]
    assert set(sources) == {
        (("node", "node-a"), ("source", "afpacket"), ("tls", "on")),
        (("node", "node-a"), ("source", "tls-uprobes"), ("tls", "on")),
        (("node", "node-b"), ("source", "afpacket"), ("tls", "unavailable")),
    }
    processes = got["wiretide_tls_processes"]
    hooked = (("hooked", "true"), ("library", "OpenSSL"), ("node", "node-a"), ("reason", ""))
    unhooked = (("hooked", "false"), ("library", "Go"), ("node", "node-a"),
                ("reason", "stripped Go binary"))  # fmt: skip
    assert processes == {hooked: 2, unhooked: 1}
    assert got["wiretide_tls_undecrypted_flows"] == {(("node", "node-a"),): 4}
    assert got["wiretide_tls_undecrypted_bytes"] == {(("node", "node-a"),): 4196}
