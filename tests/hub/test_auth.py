"""Who may call the hub: nobody needs a token on loopback, everybody needs one beyond it
(the rule follows the listen address, not the caller), and loopback refuses requests a
web page could have smuggled in (foreign Host names, foreign WebSocket origins)."""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.hub.conftest import TOKEN, Hub, empty_env, start_hub


@pytest.mark.parametrize("path", ["/api/calls", "/api/fields", "/api/calls/x"])
def test_every_api_request_needs_the_token(token_hub: Hub, path: str) -> None:
    with token_hub.client() as c:
        r = c.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in r.json()["error"]


def test_wrong_token_is_refused(token_hub: Hub) -> None:
    with token_hub.client(token="guess") as c:
        r = c.get("/api/calls")
    assert r.status_code == 401 and "wrong token" in r.json()["error"]


def test_right_token_passes(token_hub: Hub) -> None:
    with token_hub.client(token=TOKEN) as c:
        r = c.get("/api/calls")
    assert r.status_code == 200 and r.json() == {"calls": [], "next": None}
    assert token_hub.token is None  # chosen by the operator: not printed


def test_probes_need_no_token(token_hub: Hub) -> None:
    with token_hub.client() as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200


def test_websocket_needs_the_token(token_hub: Hub) -> None:
    url = token_hub.url.replace("http", "ws") + "/api/live"
    with pytest.raises(InvalidStatus) as refused:
        connect(url)
    assert refused.value.response.status_code == 401
    # A browser cannot set headers on a WebSocket: it offers the token as a subprotocol.
    with connect(url, subprotocols=["wiretide", f"bearer.{TOKEN}"]) as ws:
        assert ws.subprotocol == "wiretide"
        first = ws.recv(timeout=60)
    assert "no Kafka broker" in first  # past the door; this hub has no broker to tail


def test_generated_token_is_printed_and_works(tmp_path: Path) -> None:
    hub = start_hub(empty_env(tmp_path), listen="0.0.0.0:0")
    try:
        assert hub.token and len(hub.token) >= 32
        with hub.client() as c:
            assert c.get("/api/calls").status_code == 401
        with hub.client(token=hub.token) as c:
            assert c.get("/api/calls").status_code == 200
    finally:
        hub.stop()


def test_loopback_needs_no_token_but_refuses_foreign_hosts(hub: Hub) -> None:
    with hub.client() as c:
        assert c.get("/api/calls", params={"limit": 1}).status_code == 200
        rebound = c.get("/api/calls", headers={"Host": "attacker.example:8899"})
    assert rebound.status_code == 403 and "loopback" in rebound.json()["error"]


def test_loopback_refuses_websockets_from_foreign_pages(hub: Hub) -> None:
    url = hub.url.replace("http", "ws") + "/api/live"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin="https://attacker.example")
    assert refused.value.response.status_code == 403
