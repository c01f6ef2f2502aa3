"""GET /api/span on the hub serving the golden HTTP capture stored by `wiretide tap`: the
first and last capture time of the calls a filter takes, which the UI offers when a
time range shows nothing (tests/ui/test_preset.py)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.hub.conftest import Hub


def _span(hub: Hub, q: str = "") -> dict:
    with hub.client() as client:
        answer = client.get("/api/span", params={"q": q})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _stored(hub: Hub, q: str = "") -> list[dict]:
    with hub.client() as client:
        page = client.get("/api/calls", params={"q": q, "limit": 1000}).json()
    assert page["next"] is None
    return page["calls"]


def test_span_is_the_first_and_last_stored_call(hub: Hub) -> None:
    calls = _stored(hub)
    oldest = min(calls, key=lambda c: c["timestamp_ns"])
    newest = max(calls, key=lambda c: c["timestamp_ns"])
    assert _span(hub) == {
        "first": oldest["timestamp"],
        "last": newest["timestamp"],
        "first_ns": oldest["timestamp_ns"],
        "last_ns": newest["timestamp_ns"],
    }


def test_a_filter_narrows_the_span_and_nothing_matched_is_null(hub: Hub) -> None:
    q = "response.status == 404"
    matching = _stored(hub, q)
    assert 0 < len(matching) < len(_stored(hub))
    span = _span(hub, q)
    assert span["first_ns"] == min(c["timestamp_ns"] for c in matching)
    assert span["last_ns"] == max(c["timestamp_ns"] for c in matching)
    assert _span(hub, 'path == "/no/such/path"') == dict.fromkeys(
        ("first", "last", "first_ns", "last_ns")
    )


def test_a_bad_filter_is_400_with_one_line(hub: Hub) -> None:
    with hub.client() as client:
        answer = client.get("/api/span", params={"q": "status =="})
    assert answer.status_code == 400
    body = answer.json()
    assert "expected a value" in body["error"] and "\n" not in body["error"]
    assert (body["line"], body["column"]) == (1, 10)


def test_answers_as_documented_never_5xx(hub: Hub) -> None:
    """Any q: 200 with a Span, or a documented 400 ErrorBody."""
    schema = schemathesis.openapi.from_url(hub.url + "/openapi.json")
    [operation] = [r.ok() for r in schema.get_all_operations() if r.ok().label == "GET /api/span"]

    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # noqa: ANN001
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500, response.text

    check()
