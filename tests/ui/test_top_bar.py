"""The top bar stays one line at 1400 and 1000 px, with the density toggle shown and a
custom time range's two date fields open: each nav item and the call count keep to one
line (the status shrinks to an ellipsis first), and the bar is as high as without the
custom range."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ARTIFACTS
from tests.hub.conftest import Hub
from tests.ui.test_ui import open_ui

# For each nav item, the title and the call count: its text, and the distinct tops of the
# lines its text is laid out on (one line: one top), and whether it shows whole.
LINES = """() => {
  const parts = [...document.querySelectorAll('.top nav button'), document.querySelector('.top h1'),
                 document.querySelector('[data-testid=count]')];
  return parts.filter(el => el.getClientRects().length).map(el => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
    const box = el.getBoundingClientRect(), bar = el.closest('.status') || el;
    const shown = bar.getBoundingClientRect();
    return {text: el.textContent, tops: tops.size, height: box.height,
            whole: el.scrollWidth <= el.clientWidth + 1 && box.right <= shown.right + 1};
  });
}"""


def bar_height(page: Page) -> float:
    return page.locator("header.top").bounding_box()["height"]


def one_line_each(page: Page) -> None:
    """Every nav item, the title and the call count is one line, shown whole."""
    parts = page.evaluate(LINES)
    assert {p["text"] for p in parts} >= {"Traffic", "Service map", "Coverage", "Replay"}
    for part in parts:
        assert part["tops"] == 1 and part["whole"], part
    heights = {p["height"] for p in parts if p["text"] in ("Traffic", "Service map")}
    assert len(heights) == 1, heights  # nav buttons alike: none two lines high


@pytest.mark.parametrize("width", [1400, 1000])
def test_the_bar_keeps_one_line_with_a_custom_range(page: Page, ui_hub: Hub, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    open_ui(page, ui_hub)
    expect(page.get_by_test_id("density")).to_be_visible()
    expect(page.get_by_test_id("live")).to_be_visible()
    expect(page.locator(".status .spinner")).to_have_count(0)
    one_line_each(page)
    before = bar_height(page)
    every_call = page.get_by_test_id("count").inner_text()

    page.get_by_test_id("time-range").select_option("custom")
    page.get_by_test_id("time-since").fill("2020-01-01T00:00:00")
    page.get_by_test_id("time-until").fill("2030-01-01T00:00:00")
    expect(page.get_by_test_id("time-until")).to_be_visible()
    expect(page.get_by_test_id("density")).to_be_visible()
    expect(page.get_by_test_id("count")).to_have_text(every_call)  # the range holds them all
    expect(page.locator(".status .spinner")).to_have_count(0)
    one_line_each(page)
    assert bar_height(page) == before
    # everything the bar holds is inside the window, side by side on one row
    tops = set()
    for part in page.locator("header.top > *").all():
        box = part.bounding_box()
        if box is None or box["width"] == 0:
            continue
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, part.inner_html()[:80]
        tops.add(round(box["y"] + box["height"] / 2))
    assert max(tops) - min(tops) <= 2, tops  # centred on one line
    page.screenshot(path=str(ARTIFACTS / f"top_bar_custom_range_{width}px.png"))

    # the same on the map tab (no density toggle there)
    page.get_by_test_id("tab-map").click()
    one_line_each(page)
    assert bar_height(page) == before
