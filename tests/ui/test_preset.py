"""A time preset that holds no calls while older ones are stored (the golden captures
are old): the list says so, with the stored span, and a button sets the range to it
instead of leaving an empty page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from tests.hub.conftest import Hub
from tests.ui.test_glyphs import odd_characters
from tests.ui.test_ui import count, open_ui, stored, type_filter


def span(api, q: str = "") -> tuple[datetime, datetime]:  # noqa: ANN001
    answer = api.get("/api/span", params={"q": q}).json()
    return (
        datetime.fromtimestamp(answer["first_ns"] // 10**9, UTC),
        datetime.fromtimestamp(answer["last_ns"] // 10**9, UTC),
    )


def words(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")  # the page runs in UTC


def choose_last_15_minutes(page: Page) -> None:
    page.get_by_test_id("time-range").select_option("15")


def show_the_span_of_redis_calls(page: Page, api) -> None:  # noqa: ANN001
    """Under "Last 15 minutes", filter on redis: the notice names the matching calls' span;
    then click its button."""
    first, last = span(api, "redis")
    choose_last_15_minutes(page)
    expect(page.get_by_test_id("stored-span")).to_be_visible()
    type_filter(page, "redis")
    expect(page.get_by_test_id("stored-span-text")).to_have_text(
        "No matching calls in the last 15 minutes; matching stored calls span"
        f" {words(first)}–{words(last)}."
    )
    page.get_by_test_id("show-stored-span").click()


def test_an_empty_preset_offers_the_stored_span(page: Page, ui_hub: Hub, api) -> None:
    first, last = span(api)
    assert last < datetime.now(UTC) - timedelta(minutes=15), "the captures are old"
    everything = stored(api)
    open_ui(page, ui_hub)
    expect(page.locator('[data-testid="row"]').first).to_have_attribute(
        "data-id", everything[0]["id"]
    )
    choose_last_15_minutes(page)
    notice = page.get_by_test_id("stored-span-text")
    expect(notice).to_have_text(
        f"No calls in the last 15 minutes; stored calls span {words(first)}–{words(last)}."
    )
    expect(page.locator('[data-testid="row"]')).to_have_count(0)
    assert odd_characters(page) == []  # no missing-glyph boxes

    page.get_by_test_id("show-stored-span").click()
    # the range is now the stored span, to the second, and the list shows every call
    since = datetime.fromisoformat(page.get_by_test_id("time-since").input_value())
    until = datetime.fromisoformat(page.get_by_test_id("time-until").input_value())
    assert (since, until) == (
        first.replace(tzinfo=None),
        last.replace(tzinfo=None) + timedelta(seconds=1),
    )
    expect(page.get_by_test_id("time-range")).to_have_value("custom")
    expect(page.get_by_test_id("stored-span")).to_have_count(0)
    expect(page.locator('[data-testid="row"]').first).to_have_attribute(
        "data-id", everything[0]["id"]
    )
    rows = page.get_by_test_id("rows")
    while count(page) < len(everything):  # paging back reaches the oldest call too
        before = count(page)
        rows.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        page.wait_for_function(
            "n => +document.querySelector('[data-testid=count]').dataset.count > n", arg=before
        )
    expect(page.get_by_test_id("count")).to_have_text(f"{len(everything)} calls")


def test_the_notice_follows_the_filter(page: Page, ui_hub: Hub, api) -> None:
    redis = stored(api, "redis")
    assert 0 < len(redis) < min(100, len(stored(api)))
    open_ui(page, ui_hub)
    show_the_span_of_redis_calls(page, api)
    expect(page.get_by_test_id("count")).to_have_text(f"{len(redis)} calls")  # one page
    expect(page.locator('[data-testid="row"]').first).to_have_attribute("data-id", redis[0]["id"])
    # a filter nothing stored matches: no span to offer
    type_filter(page, 'path == "/nowhere/at/all"')
    expect(page.get_by_test_id("count")).to_have_text("0 calls")
    expect(page.get_by_test_id("rows")).to_contain_text("No calls match.")
    expect(page.get_by_test_id("stored-span")).to_have_count(0)
