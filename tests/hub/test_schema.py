"""Schemathesis over the hub's own OpenAPI description: whatever the generated
parameters (filters, cursors, limits, ids, credentials), the hub answers as documented
(status, content type, body schema; a token hub refuses made-up credentials) and never
with a server error. Run against the loopback hub over stored calls and a hub that
wants a token.

(`schemathesis.pytest.from_fixture` does not run under pytest 9, so each operation's
strategy drives a Hypothesis test here instead.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.hub.conftest import TOKEN, Hub

# A schema-valid string is not always a valid KFL filter or cursor (their grammar is not
# JSON Schema), so "schema-valid requests are accepted" does not hold for q and before;
# their rejections are checked to be documented 400s with an ErrorBody instead.
_EXCLUDED = [positive_data_acceptance]

OPERATIONS = [
    "GET /api/calls",
    "GET /api/calls/{call_id}",
    "GET /api/fields",
    "GET /healthz",
    "GET /readyz",
]


def _operations(hub: Hub) -> dict[str, object]:
    schema = schemathesis.openapi.from_url(hub.url + "/openapi.json")
    return {op.label: op for op in (result.ok() for result in schema.get_all_operations())}


@pytest.fixture(scope="module", params=["loopback", "token"])
def described(request: pytest.FixtureRequest) -> tuple[dict[str, object], dict[str, str]]:
    """(operations, headers a legitimate client sends) of each kind of hub."""
    if request.param == "loopback":
        return _operations(request.getfixturevalue("hub")), {}
    token_hub = request.getfixturevalue("token_hub")
    return _operations(token_hub), {"Authorization": f"Bearer {TOKEN}"}


def test_every_endpoint_is_described(described) -> None:  # noqa: ANN001
    from wiretide.hub.routes import ROUTES

    operations, _ = described
    assert set(OPERATIONS) <= set(operations)
    # every mounted route module is described too (its own tests run schemathesis on it)
    for name in ROUTES:
        assert any(op.startswith(f"GET /api/{name}") for op in operations), name


@pytest.mark.parametrize("label", OPERATIONS)
def test_answers_as_documented_never_5xx(described, label: str) -> None:  # noqa: ANN001
    operations, headers = described

    @given(case=operations[label].as_strategy())
    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # noqa: ANN001
        response = case.call_and_validate(headers=headers, excluded_checks=_EXCLUDED)
        assert response.status_code < 500, response.text

    check()
