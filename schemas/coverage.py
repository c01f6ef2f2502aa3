"""Coverage: what Wiretide captured and decrypted on each node and pod, and why not.

The one sans-IO place for these facts. Node agents publish a `NodeCoverage` (Coverage.avsc,
compacted topic `wiretide.coverage`, keyed by node); the worker flags the ciphertext rows of
TLS connections it got no plaintext for (`ENCRYPTED` in ApiCall.flags), which the store
sums into `UndecryptedFlows`. `CoverageReport.build(nodes, undecrypted)` joins both: the
hub's `/api/coverage`, `wiretide status`, the UI's Coverage page and `tap`'s TLS line read
it, and metrics exporters can count from it (hooked/unhooked processes, undecrypted flows
and bytes, kernel drops per node).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.codec import codec

ENCRYPTED = "encrypted"  # ApiCall flag: TLS records on the wire, no plaintext captured
SOURCE_AFPACKET = "afpacket"
SOURCE_TLS = "tls-uprobes"
MAX_PROCESSES = 512  # per node record: the newest are kept


@dataclass(frozen=True, slots=True)
class TlsProcess:
    """A process doing TLS: the library hooked in it, or the reason it was not."""

    pid: int
    command: str
    library: str  # OpenSSL | BoringSSL | Go | Java | GnuTLS | NSS
    hooked: bool
    version: str = ""
    path: str = ""
    reason: str = ""  # why not hooked: one line, its short name before " ("
    exe: str = ""
    pod: str = ""
    namespace: str = ""

    @property
    def short_reason(self) -> str:
        return self.reason.split(" (", 1)[0]

    @property
    def label(self) -> str:
        """`OpenSSL 3.0`, `Go 1.26`: the library and its major.minor version."""
        return f"{self.library} {'.'.join(self.version.split('.')[:2])}".strip()


@dataclass(frozen=True, slots=True)
class NodeCoverage:
    """What one node agent captures: sources, TLS state, kernel drops, TLS processes."""

    node: str
    updated_ns: int
    sources: tuple[str, ...] = ()
    interfaces: str = ""
    tls: str = "off"  # off | on | unavailable
    tls_problem: str = ""
    kernel_packets: int = 0
    kernel_drops: int = 0
    tls_bytes: int = 0
    processes: tuple[TlsProcess, ...] = ()


@dataclass(frozen=True, slots=True)
class UndecryptedFlows:
    """TLS connections between two parties seen only as ciphertext (from the store)."""

    node: str
    client: str  # namespace/pod, else the IP
    server: str  # namespace/pod, else ip:port
    flows: int
    bytes: int


def encode_node_coverage(cov: NodeCoverage) -> bytes:
    rec = {f.name: getattr(cov, f.name) for f in dataclasses.fields(cov)}
    rec["sources"] = list(cov.sources)
    rec["processes"] = [dataclasses.asdict(p) for p in cov.processes[-MAX_PROCESSES:]]
    return codec("Coverage").encode(rec)


def decode_node_coverage(data: bytes) -> NodeCoverage:
    rec = codec("Coverage").decode(data)
    rec["sources"] = tuple(rec["sources"])
    rec["processes"] = tuple(TlsProcess(**p) for p in rec["processes"])
    return NodeCoverage(**rec)


def _pod_key(namespace: str, pod: str) -> str:
    return f"{namespace}/{pod}" if pod else ""


@dataclass(frozen=True, slots=True)
class PodCoverage:
    pod: str  # namespace/pod
    node: str
    processes: tuple[TlsProcess, ...]
    undecrypted_flows: int
    undecrypted_bytes: int


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """Every node's newest facts and the undecrypted flows, joined per node and pod."""

    nodes: tuple[NodeCoverage, ...]
    undecrypted: tuple[UndecryptedFlows, ...] = ()

    @classmethod
    def build(
        cls, nodes: Iterable[NodeCoverage], undecrypted: Iterable[UndecryptedFlows] = ()
    ) -> CoverageReport:
        newest: dict[str, NodeCoverage] = {}
        for cov in nodes:
            if cov.node not in newest or cov.updated_ns >= newest[cov.node].updated_ns:
                newest[cov.node] = cov
        flows = sorted(undecrypted, key=lambda u: (-u.bytes, u.node, u.client, u.server))
        return cls(tuple(newest[n] for n in sorted(newest)), tuple(flows))

    def processes(self, node: str | None = None) -> list[TlsProcess]:
        return [p for n in self.nodes if node in (None, n.node) for p in n.processes]

    def undecrypted_totals(self, node: str | None = None) -> tuple[int, int]:
        """(flows, bytes) of TLS seen only as ciphertext, on `node` or everywhere."""
        rows = [u for u in self.undecrypted if node in (None, u.node)]
        return sum(u.flows for u in rows), sum(u.bytes for u in rows)

    def pods(self) -> list[PodCoverage]:
        """Per pod (namespace/pod): its TLS processes and the undecrypted flows it is in."""
        procs: dict[tuple[str, str], list[TlsProcess]] = {}
        for n in self.nodes:
            for p in n.processes:
                key = _pod_key(p.namespace, p.pod)
                if key:
                    procs.setdefault((key, n.node), []).append(p)
        flows: Counter[tuple[str, str]] = Counter()
        size: Counter[tuple[str, str]] = Counter()
        for u in self.undecrypted:
            for side in {u.client, u.server}:
                if "/" in side:
                    flows[(side, u.node)] += u.flows
                    size[(side, u.node)] += u.bytes
        keys = sorted(set(procs) | set(flows))
        return [
            PodCoverage(
                pod, node, tuple(procs.get((pod, node), ())), flows[pod, node], size[pod, node]
            )
            for pod, node in keys
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON of /api/coverage."""
        nodes = []
        for n in self.nodes:
            flows, size = self.undecrypted_totals(n.node)
            nodes.append(
                {**dataclasses.asdict(n), "undecrypted_flows": flows, "undecrypted_bytes": size}
            )
        flows, size = self.undecrypted_totals()
        return {
            "nodes": nodes,
            "pods": [dataclasses.asdict(p) for p in self.pods()],
            "undecrypted": [dataclasses.asdict(u) for u in self.undecrypted],
            "undecrypted_flows": flows,
            "undecrypted_bytes": size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoverageReport:
        """Back from `to_dict` (what `wiretide status` gets from a hub)."""
        names = {f.name for f in dataclasses.fields(NodeCoverage)}
        nodes = []
        for n in data.get("nodes", []):
            rec = {k: v for k, v in n.items() if k in names}
            rec["sources"] = tuple(rec.get("sources", ()))
            rec["processes"] = tuple(TlsProcess(**p) for p in rec.get("processes", ()))
            nodes.append(NodeCoverage(**rec))
        flows = [UndecryptedFlows(**u) for u in data.get("undecrypted", [])]
        return cls.build(nodes, flows)


def tls_summary(processes: Iterable[TlsProcess], undecrypted_flows: int | None) -> str:
    """One line: `TLS: 3 processes hooked (OpenSSL 3.0: 2, Go 1.26: 1), 1 not (stripped Go
    binary: /usr/bin/x), 12 flows undecrypted`."""
    procs = list(processes)
    hooked = [p for p in procs if p.hooked]
    missed = [p for p in procs if not p.hooked]
    labels = Counter(p.label for p in hooked)
    text = f"TLS: {len(hooked)} process{'es' if len(hooked) != 1 else ''} hooked"
    if labels:
        text += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())) + ")"
    if missed:
        why: dict[str, list[str]] = {}
        for p in missed:
            why.setdefault(p.short_reason or "not hooked", []).append(p.exe or p.command)
        parts = [f"{r}: {', '.join(sorted(set(w))[:3])}" for r, w in sorted(why.items())]
        text += f", {len(missed)} not (" + "; ".join(parts) + ")"
    if undecrypted_flows is not None:
        text += f", {undecrypted_flows} flow{'s' if undecrypted_flows != 1 else ''} undecrypted"
    return text
