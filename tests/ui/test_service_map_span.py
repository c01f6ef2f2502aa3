"""The service map under a time preset that holds no calls while older ones are stored
(the golden captures are old): like the list, the map says so with the stored span, and
its button draws the map of that span instead of leaving a blank canvas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from tests.hub.conftest import Hub
from tests.ui.test_glyphs import odd_characters
from tests.ui.test_preset import (
    choose_last_15_minutes,
    show_the_span_of_redis_calls,
    span,
    words,
)
from tests.ui.test_ui import open_ui, type_filter

ALL_TIME = "1970-01-01T00:00:00Z"


def drawn_edges(page: Page) -> list[tuple[str, str, str, int]]:
    edges = page.get_by_test_id("map-edge").evaluate_all(
        "es => es.map(e => [e.dataset.source, e.dataset.target, e.dataset.protocol,"
        " +e.dataset.calls])"
    )
    return sorted(map(tuple, edges))


def api_edges(graph: dict) -> list[tuple[str, str, str, int]]:
    return sorted((e["src"], e["dst"], e["protocol"], e["calls"]) for e in graph["edges"])


def test_an_empty_preset_on_the_map_offers_the_stored_span(page: Page, ui_hub: Hub, api) -> None:
    first, last = span(api)
    assert last < datetime.now(UTC) - timedelta(minutes=15), "the captures are old"
    assert api.get("/api/map", params={"since": "15m"}).json()["edges"] == []
    open_ui(page, ui_hub)
    page.get_by_test_id("tab-map").click()
    choose_last_15_minutes(page)
    expect(page.get_by_test_id("map-empty")).to_be_visible()
    expect(page.get_by_test_id("stored-span-text")).to_have_text(
        f"No calls in the last 15 minutes; stored calls span {words(first)}–{words(last)}."
    )
    expect(page.get_by_test_id("map-edge")).to_have_count(0)
    assert odd_characters(page) == []  # no missing-glyph boxes

    page.get_by_test_id("show-stored-span").click()
    expect(page.get_by_test_id("time-range")).to_have_value("custom")
    # the map now draws the edges the API gives for that span: every stored call
    since = first.replace(microsecond=0)
    until = last.replace(microsecond=0) + timedelta(seconds=1)
    graph = api.get(
        "/api/map", params={"since": since.isoformat(), "until": until.isoformat()}
    ).json()
    everything = api.get("/api/map", params={"since": ALL_TIME}).json()
    assert api_edges(graph) == api_edges(everything) != []
    expect(page.get_by_test_id("map-edge")).to_have_count(len(graph["edges"]))
    assert drawn_edges(page) == api_edges(graph)
    expect(page.get_by_test_id("map-empty")).to_have_count(0)
    expect(page.get_by_test_id("stored-span")).to_have_count(0)


def test_the_maps_notice_follows_the_filter(page: Page, ui_hub: Hub, api) -> None:
    open_ui(page, ui_hub)
    page.get_by_test_id("tab-map").click()
    show_the_span_of_redis_calls(page, api)
    graph = api.get("/api/map", params={"q": "redis", "since": ALL_TIME}).json()
    assert {e["protocol"] for e in graph["edges"]} == {"redis"}
    expect(page.get_by_test_id("map-edge")).to_have_count(len(graph["edges"]))
    assert drawn_edges(page) == api_edges(graph)
    # a filter nothing stored matches: no span to offer, the map says nothing matches
    type_filter(page, 'path == "/nowhere/at/all"')
    expect(page.get_by_test_id("map-empty")).to_have_text("No calls match.")
    expect(page.get_by_test_id("stored-span")).to_have_count(0)
