"""`wiretide map --by namespace` over the same tap-filled data dir as test_map.py (golden
captures moved onto made-up pods and services): a node per namespace, each edge the sum
of its workloads' edges, the same through a hub as straight from the store, and a bad
grouping is a one-line error."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from sinks.clickhouse.service_map import GROUPINGS
from tests.e2e.test_map import _expected, _span, calls, run_map, stored  # noqa: F401
from tests.hub.conftest import start_hub
from wiretide.cli import map as map_cli
from wiretide.hub.client import advertise, withdraw


def _namespace(node_id: str) -> str:
    """A workload's `namespace/workload` id becomes its namespace; an address stays."""
    return node_id.split("/", 1)[0]


def _by_namespace(edges: dict[tuple[str, str, str], list[int]]) -> dict:
    merged: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (src, dst, protocol), figures in edges.items():
        total = merged[(_namespace(src), _namespace(dst), protocol)]
        for i, n in enumerate(figures):
            total[i] += n
    return dict(merged)


def _got(graph: dict) -> dict[tuple[str, str, str], list[int]]:
    return {
        (e["src"], e["dst"], e["protocol"]): [e["calls"], e["errors"], e["bytes"]]
        for e in graph["edges"]
    }


def test_the_cli_knows_the_stores_groupings():
    assert map_cli.GROUPINGS == GROUPINGS


def test_by_namespace_merges_each_namespaces_workloads(stored, calls):  # noqa: F811
    since, until = _span(calls)
    graph = json.loads(
        run_map(stored, "--json", "--by", "namespace", "--since", since, "--until", until).stdout
    )
    expected = _by_namespace(_expected(calls))
    assert _got(graph) == expected
    assert ("shop", "data", "postgresql") in expected  # orders -> db, now shop -> data
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds["shop"] == kinds["data"] == kinds["kube-system"] == "namespace"
    assert kinds["203.0.113.5"] == "ip"  # outside the cluster: its own node
    # --by workload is the default
    default = run_map(stored, "--json", "--since", since, "--until", until).stdout
    workload = run_map(stored, "--json", "--by", "workload", "--since", since, "--until", until)
    assert json.loads(default) == json.loads(workload.stdout)
    assert _got(json.loads(default)) == _expected(calls)


def test_by_namespace_table_names_namespaces(stored, calls):  # noqa: F811
    since, until = _span(calls)
    out = run_map(stored, "--by", "namespace", "--since", since, "--until", until).stdout
    lines = out.splitlines()
    expected = _by_namespace(_expected(calls))
    assert lines[0] == "between namespaces"  # one table: every source is a namespace
    rows = [line.split() for line in lines[2 : lines.index("")]]
    assert len(rows) == len(expected)
    counts = [int(row[3]) for row in rows]
    assert counts == sorted(counts, reverse=True)
    data = next(row for row in rows if row[:3] == ["shop", "data", "postgresql"])
    assert int(data[3]) == expected[("shop", "data", "postgresql")][0]
    assert lines[-1].startswith(
        f"{len(expected)} edges, {sum(e[0] for e in expected.values())} calls"
    )


def test_a_bad_grouping_is_one_line(stored):  # noqa: F811
    proc = run_map(stored, "--by", "pod", check=False)
    assert proc.returncode == 2
    assert proc.stderr == (
        "wiretide: error: --by: group the map by workload or namespace, not 'pod'\n"
    )
    assert proc.stdout == ""


def test_by_namespace_through_the_hub_is_the_stores_graph(stored, calls):  # noqa: F811
    since, until = _span(calls)
    args = ("--json", "--by", "namespace", "--since", since, "--until", until)
    direct = json.loads(run_map(stored, *args).stdout)
    hub = start_hub(stored)
    data = Path(stored["WIRETIDE_DATA"])
    try:
        with hub.client() as client:
            answer = client.get(
                "/api/map", params={"since": since, "until": until, "by": "namespace"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == direct
        advertise(data, hub.url, None)  # the hub owns the data dir: `map` asks it
        assert json.loads(run_map(stored, *args).stdout) == direct
        workload = run_map(stored, "--json", "--since", since, "--until", until).stdout
        assert _got(json.loads(workload)) == _expected(calls)  # and by workload still
    finally:
        withdraw(data)
        hub.stop()
