"""`wiretide status`: per node, what is captured and decrypted, and why not (coverage)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide.cli.options import common

if TYPE_CHECKING:  # imported where used: the codec loads fastavro, and every command loads this
    from schemas.coverage import CoverageReport, NodeCoverage, TlsProcess

NAME = "status"
HELP = "what each node captures and decrypts (TLS libraries hooked or why not), and drops"
DESCRIPTION = (
    "One block per node: its capture sources, kernel drops, the processes doing TLS with "
    "the library hooked in each (or the exact reason not), and the TLS flows seen only "
    "encrypted. Read from the coverage topic the agents publish and from the store."
)
_LIST = 20  # processes and flows shown per node


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="the /api/coverage JSON")
    p.add_argument(
        "--hours",
        type=float,
        default=24.0,
        metavar="N",
        help="undecrypted flows of the last N hours",
    )
    common(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.hours > 0:
        raise WiretideError(f"--hours: expected a number above 0, got {args.hours:g}")
    from schemas.coverage import CoverageReport

    data = _coverage(settings, args.hours)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    report = CoverageReport.from_dict(data)
    print(render(report, time.time_ns()))
    for problem in data.get("problems", []):
        print(f"note: {problem}")
    return 0


def _coverage(settings: Settings, hours: float) -> dict:
    """The /api/coverage answer: from the hub that owns the store, else read here."""
    from wiretide.hub.client import find_owner

    hub = find_owner(settings)
    if hub is not None:
        return hub.get_json("/api/coverage", {"hours": hours})
    from schemas.coverage import CoverageReport
    from sinks.clickhouse import datadir
    from sinks.clickhouse.connect import open_store
    from sinks.errors import SinkError
    from wiretide import coverage
    from wiretide.hub.routes.coverage import _kafka

    problems, nodes, flows = [], [], []
    try:
        nodes = coverage.read_nodes(_kafka(settings))
    except WiretideError as ex:
        problems.append(str(ex))
    try:
        dsn = settings.store_dsn
        datadir.require_store(dsn)
        with open_store(dsn, ttl_days=None, cluster=settings.clickhouse_cluster) as store:
            flows = coverage.undecrypted(store, time.time_ns() - int(hours * 3600e9))
    except (SinkError, WiretideError) as ex:
        problems.append(str(ex))
    return {**CoverageReport.build(nodes, flows).to_dict(), "problems": problems}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _missed(p: TlsProcess) -> str:
    where = f"  ({p.namespace}/{p.pod})" if p.pod else ""
    return f"    NOT    pid {p.pid:<7} {p.command[:15]:15s} {p.label:12s} {p.reason}{where}"


def _hooked(procs: list[TlsProcess]) -> list[str]:
    """Hooked processes grouped by library, version and file: one line each."""
    groups: dict[tuple[str, str, str], list[TlsProcess]] = {}
    for p in procs:
        groups.setdefault((p.library, p.version, p.path), []).append(p)
    lines = []
    for (library, version, path), group in sorted(groups.items()):
        pids = ", ".join(f"{p.command} {p.pid}" for p in sorted(group, key=lambda p: p.pid)[:4])
        more = ", ..." if len(group) > 4 else ""
        n = len(group)
        lines.append(
            f"    hooked {library} {version or '?'}  {path}: "
            f"{n} process{'es' if n != 1 else ''} ({pids}{more})"
        )
    return lines


def _node(n: NodeCoverage, report: CoverageReport, now_ns: int) -> list[str]:
    age = max(0.0, (now_ns - n.updated_ns) / 1e9)
    names = {"afpacket": f"AF_PACKET on {n.interfaces or '?'}", "tls-uprobes": "TLS uprobes"}
    sources = "; ".join(names.get(s, s) for s in n.sources) or "none"
    lines = [
        f"node {n.node}  (reported {age:.0f}s ago)",
        f"  capture: {sources}",
        f"  kernel:  {n.kernel_packets} packets, {n.kernel_drops} dropped",
    ]
    hooked = sum(p.hooked for p in n.processes)
    if n.tls == "off":
        lines.append("  TLS:     off (capture with --tls to read TLS plaintext)")
    elif n.tls == "unavailable":
        lines.append(f"  TLS:     unavailable: {n.tls_problem}")
    else:
        missed = len(n.processes) - hooked
        lines.append(
            f"  TLS:     on, {hooked} processes hooked, {missed} not, "
            f"{_size(n.tls_bytes)} plaintext read"
        )
    lines += _hooked([p for p in n.processes if p.hooked])
    missed = sorted((p for p in n.processes if not p.hooked), key=lambda p: (p.command, p.pid))
    lines += [_missed(p) for p in missed[:_LIST]]
    if len(missed) > _LIST:
        lines.append(f"    ... and {len(missed) - _LIST} more not hooked (--json lists them)")
    flows, size = report.undecrypted_totals(n.node)
    lines.append(f"  undecrypted TLS: {flows} flows, {_size(size)}")
    rows = [u for u in report.undecrypted if u.node == n.node]
    lines += [
        f"    {u.client} -> {u.server}  {u.flows} flows, {_size(u.bytes)}" for u in rows[:_LIST]
    ]
    return lines


def render(report: CoverageReport, now_ns: int) -> str:
    """One block per node, then the pods; readable in a terminal."""
    if not report.nodes:
        out = [
            "no node has reported its coverage yet (an agent reports while it captures: "
            "wiretide tap, wiretide agent)"
        ]
        flows, size = report.undecrypted_totals()
        if flows:
            out.append(f"undecrypted TLS in the store: {flows} flows, {_size(size)}")
        return "\n".join(out)
    blocks = ["\n".join(_node(n, report, now_ns)) for n in report.nodes]
    pods = report.pods()
    if pods:
        lines = ["pods:"]
        for p in pods:
            hooked = sum(x.hooked for x in p.processes)
            lines.append(
                f"  {p.pod} on {p.node}: {hooked} of {len(p.processes)} TLS processes hooked, "
                f"{p.undecrypted_flows} flows undecrypted ({_size(p.undecrypted_bytes)})"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
