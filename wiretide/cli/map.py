"""`wiretide map`: the service map of a time window as a terminal table (or JSON).

    wiretide map                      # the last 15 minutes
    wiretide map --since 2h --json    # the graph the hub's GET /api/map returns
    wiretide map --by namespace       # a node per namespace, as the hub's by=namespace
    wiretide map --since 2024-05-06T07:00:00Z --until 2024-05-06T08:00:00Z 'http'

While another process owns the embedded data dir (a hub, or `wiretide tap` storing), the
map comes from that process's API (wiretide.hub.client), so both give the same graph.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide.cli.options import common, kfl_filter
from wiretide.window import DEFAULT_SINCE, TIME_HELP, window

NAME = "map"
HELP = "print the service map: who calls whom, how often, errors, latency"
DESCRIPTION = (
    "Edges between workloads (a pod's Deployment/StatefulSet name, else "
    "the service, else the IP) per protocol in a time window, grouped by the caller's "
    "namespace, busiest first; --by namespace merges each namespace's workloads into one "
    "node. Windows are whole minutes."
)
# sinks.clickhouse.service_map.GROUPINGS, not imported: that loads the store client (0.5 s)
GROUPINGS = ("workload", "namespace")


def add_arguments(p: argparse.ArgumentParser) -> None:
    kfl_filter(p, "map only the calls this KFL filter takes (reads every call of the window)")
    p.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        metavar="WHEN",
        help=f"{TIME_HELP} (default {DEFAULT_SINCE})",
    )
    p.add_argument("--until", metavar="WHEN", help="end of the window (default: now)")
    p.add_argument(
        "--exact",
        action="store_true",
        help="count each call once even after a writer replayed a batch (slower: reads calls)",
    )
    p.add_argument(
        "--by",
        default="workload",
        metavar="GROUPING",
        help="a node per workload (default) or per namespace (addresses outside the "
        "cluster stay nodes of their own)",
    )
    p.add_argument("--json", action="store_true", help="the graph as one JSON object")
    common(p, kafka=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since, until = window(args.since, args.until)
    except ValueError as ex:
        raise WiretideError(f"--since/--until: {ex}") from None
    if args.by not in GROUPINGS:  # checked here, not by argparse: one line, no usage
        raise WiretideError(f"--by: group the map by workload or namespace, not {args.by!r}")
    graph = _read(args, settings, since, until)
    text = json.dumps(graph, ensure_ascii=False) + "\n" if args.json else render(graph, args.by)
    sys.stdout.write(text)
    return 0


def _read(
    args: argparse.Namespace, settings: Settings, since: datetime, until: datetime
) -> dict[str, Any]:
    """The graph as the API's JSON: from the data dir's owner if one runs, else the store."""
    if not settings.clickhouse:
        from wiretide.hub.client import find_hub

        hub = find_hub(settings.data)
        if hub is not None:
            params = {"since": since.isoformat(), "until": until.isoformat()}
            params.update({"q": args.filter or None, "exact": "true" if args.exact else None})
            params["by"] = args.by
            return hub.get_json("/api/map", params)
    from sinks.clickhouse import datadir
    from sinks.clickhouse.connect import open_store
    from sinks.clickhouse.service_map import graph_dict, read_map
    from wiretide.kfl import parse, to_sql

    where = to_sql(parse(args.filter)) if args.filter.strip() else None  # before opening
    dsn = settings.store_dsn
    datadir.require_store(dsn)
    with open_store(dsn, ttl_days=None, cluster=settings.clickhouse_cluster) as store:
        return graph_dict(read_map(store, since, until, where, exact=args.exact, by=args.by))


# --- the table --------------------------------------------------------------------

_HEAD = ("SOURCE", "DESTINATION", "PROTO", "CALLS", "ERRORS", "BYTES", "P50", "P95", "P99")
_RIGHT = {3, 4, 5, 6, 7, 8}
_ALL = "\0all"  # by namespace: one group for every edge


def render(graph: dict[str, Any], by: str = "workload") -> str:
    """Edges grouped by the caller's namespace (cluster namespaces first, then callers
    outside the cluster), busiest first; a destination in another namespace keeps its
    `namespace/` prefix. By namespace, one table of namespaces (and outside addresses)."""
    span = f"{graph['since']} .. {graph['until']}"
    if not graph["edges"]:
        return f"no calls between {span}\n"
    nodes = {n["id"]: n for n in graph["nodes"]}
    groups: dict[str, list[dict]] = {}
    for edge in graph["edges"]:
        ns = nodes[edge["src"]]["namespace"] if by == "workload" else _ALL
        groups.setdefault(ns, []).append(edge)
    out = []
    for ns in sorted(groups, key=lambda n: (n == "", n)):
        rows = [_HEAD]
        for e in sorted(groups[ns], key=lambda e: (-e["calls"], e["src"], e["dst"], e["protocol"])):
            src, dst = nodes[e["src"]], nodes[e["dst"]]
            rows.append(
                (
                    _name(src, ns),
                    _name(dst, ns),
                    e["protocol"],
                    str(e["calls"]),
                    _errors(e["errors"], e["calls"]),
                    _size(e["bytes"]),
                    *(_ms(e[q]) for q in ("p50_ms", "p95_ms", "p99_ms")),
                )
            )
        out.append(_heading(ns))
        out.extend(_table(rows))
        out.append("")
    calls = sum(e["calls"] for e in graph["edges"])
    exact = "" if graph["exact"] else " (from the map view; --exact recounts from calls)"
    out.append(f"{len(graph['edges'])} edges, {calls} calls, {span}{exact}")
    return "\n".join(out) + "\n"


def _heading(ns: str) -> str:
    if ns == _ALL:
        return "between namespaces"
    return f"namespace {ns}" if ns else "outside the cluster"


def _name(node: dict[str, Any], ns: str) -> str:
    """A workload of the group's namespace by its name; others (and a namespace's node,
    which has no workload) by their id."""
    return node["workload"] if node["workload"] and node["namespace"] == ns else node["id"]


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            c.rjust(w) if i in _RIGHT else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def _errors(errors: int, calls: int) -> str:
    return f"{errors} ({100 * errors / calls:.0f}%)" if errors else "0"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return (
        f"{value:.0f}ms" if value >= 100 else f"{value:.1f}ms" if value >= 1 else f"{value:.2f}ms"
    )
