"""At 1000 px wide with a call's detail open, the traffic list keeps every column whole
and scrolls sideways, its header with it."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.hub.conftest import Hub
from tests.ui.test_ui import open_ui

# Each cell of the first rows and of the header: [text, clipped?] (ellipsis hides text).
CLIPPED = """() => [...document.querySelectorAll('.row.head > span, [data-testid=row] > span')]
    .slice(0, 8 * 6)
    .filter(s => s.scrollWidth > s.clientWidth + 1)
    .map(s => s.textContent)"""


def test_list_scrolls_sideways_at_1000px_with_the_detail_open(page: Page, ui_hub: Hub) -> None:
    page.set_viewport_size({"width": 1000, "height": 800})
    open_ui(page, ui_hub)
    page.locator('[data-testid="row"]').first.click()
    expect(page.get_by_test_id("detail")).to_be_visible()
    rows = page.get_by_test_id("rows")
    width, scroll_width = rows.evaluate("el => [el.clientWidth, el.scrollWidth]")
    assert scroll_width > width, "the list is narrower than its columns: it must scroll"
    assert page.evaluate(CLIPPED) == []  # no column cut to an ellipsis
    # scrolled to the right end: the last column (TLS) is in view, header and rows alike
    rows.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
    page.wait_for_function(
        "() => document.querySelector('.head-box').scrollLeft > 0"
        " && document.querySelector('.head-box').scrollLeft"
        " === document.querySelector('[data-testid=rows]').scrollLeft"
    )
    box = rows.bounding_box()
    for cell in (
        page.locator(".row.head > span").last,
        page.locator('[data-testid="row"] .peers').first,
    ):
        b = cell.bounding_box()
        assert box["x"] <= b["x"] and b["x"] + b["width"] <= box["x"] + box["width"] + 1
    detail = page.get_by_test_id("detail").bounding_box()
    assert box["x"] + box["width"] <= detail["x"] + 1  # the list does not run under the detail
