"""The call detail as a way into the data: the request's query string, values that click
into the KFL bar, and the call copied as a curl command."""

from __future__ import annotations

from urllib.parse import parse_qsl

from playwright.sync_api import Page, expect

from tests.hub.conftest import Hub
from tests.ui.test_ui import open_ui, stored, type_filter, wait_for_rows


def open_detail(page: Page, hub: Hub, api, call_id: str) -> None:  # noqa: ANN001
    open_ui(page, hub)
    type_filter(page, f'id == "{call_id}"')
    wait_for_rows(page, [call_id])
    page.locator(f'[data-testid="row"][data-id="{call_id}"]').click()
    expect(page.get_by_test_id("detail")).to_be_visible()
    expect(page.get_by_test_id("request")).not_to_contain_text("Loading")


def test_detail_shows_the_query_string(page: Page, ui_hub: Hub, api) -> None:
    with_query = [c for c in stored(api, "http") if c["request"]["query"]]
    assert with_query, "the HTTP capture has a call with a query string"
    call = with_query[0]
    query = call["request"]["query"]
    open_detail(page, ui_hub, api, call["id"])
    expect(page.get_by_test_id("detail-query-raw")).to_have_text(f"?{query}")
    rows = page.get_by_test_id("detail-query-params").locator("tr")
    expected = parse_qsl(query, keep_blank_values=True)
    expect(rows).to_have_count(len(expected))
    for i, (name, value) in enumerate(expected):
        expect(rows.nth(i).locator("th")).to_have_text(name)
        expect(rows.nth(i).locator("td")).to_have_text(value)
    # a call without one says so
    plain = next(c for c in stored(api, "http") if not c["request"]["query"])
    page.get_by_test_id("kfl-input").fill(f'id == "{plain["id"]}"')
    wait_for_rows(page, [plain["id"]])
    page.locator(f'[data-testid="row"][data-id="{plain["id"]}"]').click()
    expect(page.get_by_test_id("detail-query")).to_have_text("none")
