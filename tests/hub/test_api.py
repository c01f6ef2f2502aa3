"""History over HTTP: KFL filters, paging, call detail and errors, against a hub serving
the calls `wiretide tap` stored from the golden HTTP capture."""

from __future__ import annotations

import json

import pytest

from tests.hub.conftest import EXPECTED, Hub
from wiretide.kfl import parse, to_predicate


def _summary(calls: list[dict]) -> list[tuple]:
    return sorted(
        (c["request"]["method"], c["request"]["path"], c["response"]["status"]) for c in calls
    )


def _expected(pred) -> list[tuple]:  # noqa: ANN001
    return sorted((c["method"], c["path"], c["response"]["status"]) for c in EXPECTED if pred(c))


CASES = [
    ("", lambda c: True),
    ("http and response.status == 404", lambda c: c["response"]["status"] == 404),
    ("http && status_code >= 300", lambda c: c["response"]["status"] >= 300),
    ('request.method == "POST"', lambda c: c["method"] == "POST"),
    ('request.path.startsWith("/api")', lambda c: c["path"].startswith("/api")),
    (
        'request.headers["X-Client"] == "raw-pipeline"',
        lambda c: c["client"] == "raw-socket-pipelined",
    ),
    (
        'method == "HEAD" || status_code == 204',
        lambda c: c["method"] == "HEAD" or c["response"]["status"] == 204,
    ),
    ('request.path == "x\' OR 1=1 --"', lambda c: False),
]


@pytest.mark.parametrize(("kfl", "pred"), CASES, ids=[c[0] or "every call" for c in CASES])
def test_filter_returns_exactly_the_matching_calls(
    hub: Hub, all_calls: list[dict], kfl: str, pred
) -> None:  # noqa: ANN001
    with hub.client() as c:
        r = c.get("/api/calls", params={"q": kfl, "limit": 1000})
    assert r.status_code == 200
    got = r.json()["calls"]
    # what the clients in the capture did ...
    assert _summary(got) == _expected(pred)
    # ... and exactly the ids KFL's own Python back end picks from the full calls
    keep = to_predicate(parse(kfl))
    assert sorted(x["id"] for x in got) == sorted(x["id"] for x in all_calls if keep(x))


def test_pages_cover_every_call_once_newest_first(hub: Hub, all_calls: list[dict]) -> None:
    seen, pages, before = [], 0, None
    with hub.client() as c:
        while True:
            params = {"limit": 5, **({"before": before} if before else {})}
            body = c.get("/api/calls", params=params).json()
            assert len(body["calls"]) <= 5
            seen += body["calls"]
            pages += 1
            before = body["next"]
            if before is None:
                break
    assert pages == -(-len(EXPECTED) // 5)
    ids = [x["id"] for x in seen]
    assert len(ids) == len(set(ids)) == len(EXPECTED)
    assert set(ids) == {x["id"] for x in all_calls}
    order = [(x["timestamp_ns"], x["id"]) for x in seen]
    assert order == sorted(order, reverse=True)


def test_paging_follows_the_filter(hub: Hub) -> None:
    ids, before = [], None
    with hub.client() as c:
        while True:
            params = {"q": "response.status == 200", "limit": 2}
            body = c.get(
                "/api/calls", params={**params, **({"before": before} if before else {})}
            ).json()
            ids += [x["id"] for x in body["calls"]]
            assert all(x["response"]["status"] == 200 for x in body["calls"])
            if (before := body["next"]) is None:
                break
    assert len(ids) == len(set(ids)) == sum(c["response"]["status"] == 200 for c in EXPECTED)


def test_kfl_limit_sets_the_page_size(hub: Hub) -> None:
    with hub.client() as c:
        body = c.get("/api/calls", params={"q": "http and limit(3)"}).json()
        newest = c.get("/api/calls", params={"limit": 1000}).json()["calls"]
    assert [x["id"] for x in body["calls"]] == [x["id"] for x in newest[:3]]
    assert body["next"] is not None


@pytest.mark.parametrize(
    ("kfl", "line", "column"),
    [
        ("response.status ==", 1, 19),
        ("http and\n  nosuchfield == 1", 2, 3),
        ('path == "open', 1, 9),
    ],
)
def test_bad_filter_is_400_with_its_position(hub: Hub, kfl: str, line: int, column: int) -> None:
    with hub.client() as c:
        r = c.get("/api/calls", params={"q": kfl})
    assert r.status_code == 400
    body = r.json()
    assert (body["line"], body["column"]) == (line, column)
    assert body["error"].startswith(f"{line}:{column}: ") and "\n" not in body["error"]


def test_filter_kfl_chokes_on_is_a_400_not_a_server_error(hub: Hub) -> None:
    with hub.client() as c:
        r = c.get("/api/calls", params={"q": "response.status == 2²"})
    assert r.status_code == 400 and "\n" not in r.json()["error"]


def test_bad_cursor_and_limit_are_400(hub: Hub) -> None:
    with hub.client() as c:
        cursor = c.get("/api/calls", params={"before": "not-a-cursor"})
        limit = c.get("/api/calls", params={"limit": "lots"})
    assert cursor.status_code == limit.status_code == 400
    assert "cursor" in cursor.json()["error"] and "limit" in limit.json()["error"]


def test_list_leaves_out_headers_and_bodies(hub: Hub) -> None:
    with hub.client() as c:
        call = c.get("/api/calls", params={"limit": 1}).json()["calls"][0]
    assert "headers" not in call["request"] and "body" not in call["request"]


def _detail(hub: Hub, kfl: str) -> dict:
    with hub.client() as c:
        [listed] = c.get("/api/calls", params={"q": kfl}).json()["calls"]
        return c.get(f"/api/calls/{listed['id']}").json()


@pytest.mark.parametrize("index", [0, 4])
def test_detail_has_the_redacted_headers_and_body(hub: Hub, index: int) -> None:
    want = EXPECTED[index]
    call = _detail(hub, f'src.port == {want["src"]["port"]} and path == "{want["path"]}"')
    assert call["request"]["headers"] == want["request"]["headers"]
    assert call["request"]["query"] == want["query"]
    for side in ("request", "response"):
        if want[side]["body_kind"] == "json":
            assert json.loads(call[side]["body"]) == want[side]["body"]
            assert call[side]["body_encoding"] == "utf-8"
    assert (
        call["response"]["headers"]["content-type"] == want["response"]["headers"]["content-type"]
    )


def test_detail_of_a_form_body_is_redacted(hub: Hub) -> None:
    want = EXPECTED[12]
    call = _detail(hub, 'path == "/form"')
    assert call["request"]["body"] == want["request"]["body"]
    assert "[REDACTED]" in call["request"]["body"]


def test_unknown_call_is_404(hub: Hub) -> None:
    with hub.client() as c:
        r = c.get("/api/calls/no-such-call")
    assert r.status_code == 404 and "no-such-call" in r.json()["error"]


def test_fields_lists_what_kfl_knows(hub: Hub) -> None:
    with hub.client() as c:
        body = c.get("/api/fields").json()
    by_name = {f["name"]: f for f in body["fields"]}
    assert "status_code" in by_name["response.status"]["aliases"]
    assert by_name["request.headers"]["type"] == "map"
    assert "http" in body["protocols"]


def test_probes(hub: Hub) -> None:
    with hub.client() as c:
        assert c.get("/healthz").json()["status"] == "ok"
        assert c.get("/readyz").json()["status"] == "ready"
