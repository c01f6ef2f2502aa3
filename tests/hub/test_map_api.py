"""GET /api/map on the hub serving the golden HTTP capture stored by `wiretide tap` (no
Kubernetes identities there: both sides are IP nodes), and Schemathesis over its
description. Identities, every protocol and CLI agreement: tests/e2e/test_map.py."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.hub.conftest import EXPECTED, Hub

WHOLE = {"since": "2000-01-01T00:00:00Z", "until": "now"}


def test_map_of_the_stored_capture(hub: Hub) -> None:
    with hub.client() as client:
        answer = client.get("/api/map", params=WHOLE)
    assert answer.status_code == 200, answer.text
    graph = answer.json()
    assert graph["exact"] is False
    [edge] = graph["edges"]
    assert graph["nodes"] == [
        {
            "id": "127.0.0.1",
            "workload": "127.0.0.1",
            "namespace": "",
            "kind": "ip",
            "calls": edge["calls"],  # its calls to itself, once
            "errors": edge["errors"],
        }
    ]
    assert (edge["src"], edge["dst"], edge["protocol"]) == ("127.0.0.1", "127.0.0.1", "http")
    assert edge["calls"] == len(EXPECTED)
    assert edge["errors"] == sum(c["response"]["status"] >= 500 for c in EXPECTED)
    assert edge["p50_ms"] <= edge["p95_ms"] <= edge["p99_ms"]
    # the capture's calls fall in a minute or two: the rate is over those, not since 2000
    assert graph["seconds"] in (60, 120)
    assert edge["per_second"] == round(edge["calls"] / graph["seconds"], 4)
    # grouped by namespace: an address outside the cluster stays its own node
    with hub.client() as client:
        by_ns = client.get("/api/map", params={**WHOLE, "by": "namespace"}).json()
    assert (by_ns["nodes"], by_ns["edges"]) == (graph["nodes"], graph["edges"])


def test_filter_exact_and_empty_windows(hub: Hub) -> None:
    with hub.client() as client:
        exact = client.get("/api/map", params={**WHOLE, "exact": "true"}).json()
        view = client.get("/api/map", params=WHOLE).json()
        only_404 = client.get("/api/map", params={**WHOLE, "q": "response.status == 404"}).json()
        old = client.get(
            "/api/map", params={"since": "2001-01-01T00:00:00Z", "until": "2001-01-02"}
        )
    assert exact["exact"] and exact["edges"] == view["edges"]
    assert only_404["exact"]
    assert only_404["edges"][0]["calls"] == sum(c["response"]["status"] == 404 for c in EXPECTED)
    assert old.status_code == 200 and old.json()["edges"] == [] and old.json()["nodes"] == []


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"since": "yesterday"}, "since/until: expected a duration ago"),
        ({"since": "1h", "until": "2h"}, "before it starts"),
        ({"since": "1800-01-01"}, "between 1970 and 2100"),
        ({"q": "status =="}, "1:10: expected a value"),
        ({"by": "pod"}, "by:"),
    ],
)
def test_bad_parameters_are_400_with_one_line(hub: Hub, params: dict, says: str) -> None:
    with hub.client() as client:
        answer = client.get("/api/map", params=params)
    assert answer.status_code == 400
    assert says in answer.json()["error"] and "\n" not in answer.json()["error"]


def test_answers_as_documented_never_5xx(hub: Hub) -> None:
    """Any since/until/q/exact: 200 with a ServiceMap, or a documented 400 ErrorBody."""
    schema = schemathesis.openapi.from_url(hub.url + "/openapi.json")
    [operation] = [r.ok() for r in schema.get_all_operations() if r.ok().label == "GET /api/map"]

    @given(case=operation.as_strategy())
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # noqa: ANN001
        # a schema-valid string is not always a time or a KFL filter: those are 400s
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500, response.text

    check()
