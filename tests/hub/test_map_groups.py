"""GET /api/map over hundreds of workloads in a dozen namespaces (tests/ui/synthetic_map.py's
calls, stored by the real writer; the hub its own process): grouped by namespace, each
edge is the sum of its workloads' edges, its p95 among theirs; nodes carry their calls;
rates are over the minutes that hold calls; a filter and `exact` agree."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest

from tests.hub.conftest import Hub, start_hub
from tests.ui import synthetic_map

ALL = {"since": "1970-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def big_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = start_hub(synthetic_map.filled_env(tmp_path_factory.mktemp("bigmap")))
    yield running
    running.stop()


def get(hub: Hub, **params: str) -> dict:
    with hub.client() as client:
        answer = client.get("/api/map", params={**ALL, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_workload_nodes_carry_the_calls_of_their_edges(big_hub: Hub) -> None:
    graph = get(big_hub)
    assert len(graph["nodes"]) == synthetic_map.NAMESPACES * synthetic_map.WORKLOADS
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in graph["edges"]:
        for end in {e["src"], e["dst"]}:
            totals[end][0] += e["calls"]
            totals[end][1] += e["errors"]
    assert {n["id"]: [n["calls"], n["errors"]] for n in graph["nodes"]} == totals
    assert 60 <= graph["seconds"] <= 240  # the calls span ~2 minutes, not since 1970
    for e in graph["edges"]:
        assert e["per_second"] == pytest.approx(e["calls"] / graph["seconds"], abs=1e-4)


def test_by_namespace_sums_the_workload_edges(big_hub: Hub) -> None:
    workloads = get(big_hub)
    namespaces = get(big_hub, by="namespace")
    ns_of = {n["id"]: n["namespace"] for n in workloads["nodes"]}
    merged: dict[tuple, list] = defaultdict(lambda: [0, 0, []])
    for e in workloads["edges"]:
        key = (ns_of[e["src"]], ns_of[e["dst"]], e["protocol"])
        merged[key][0] += e["calls"]
        merged[key][1] += e["errors"]
        merged[key][2].append(e["p95_ms"])
    got = {(e["src"], e["dst"], e["protocol"]): e for e in namespaces["edges"]}
    assert set(got) == set(merged)
    for key, (calls, errors, p95s) in merged.items():
        assert (got[key]["calls"], got[key]["errors"]) == (calls, errors), key
        # a quantile of the union lies among its parts' (sampled states: a little slack)
        assert min(p95s) - 0.5 <= got[key]["p95_ms"] <= max(p95s) + 0.5, key
    assert {n["id"] for n in namespaces["nodes"]} == set(ns_of.values())
    assert {n["kind"] for n in namespaces["nodes"]} == {"namespace"}
    assert sum(n["calls"] for n in namespaces["nodes"]) > 0
    assert namespaces["seconds"] == workloads["seconds"]
    exact = get(big_hub, by="namespace", exact="true")
    assert exact["exact"] and exact["edges"] == namespaces["edges"]


def test_by_namespace_with_a_filter(big_hub: Hub) -> None:
    def figures(edges: list[dict]) -> list[dict]:  # the rate's span is the filtered calls'
        return [{k: v for k, v in e.items() if k != "per_second"} for e in edges]

    into = get(big_hub, by="namespace", q='dst.namespace == "ns03"')
    everything = get(big_hub, by="namespace")
    assert figures(into["edges"]) == figures([e for e in everything["edges"] if e["dst"] == "ns03"])
