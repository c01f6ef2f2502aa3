"""Row density: compact rows (one line) fit more calls in view; detailed rows add a
second line (the date, body sizes, the addresses of named sides). The choice is a
toggle in the top bar, remembered across reloads."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import Page, expect

from tests.conftest import ARTIFACTS
from tests.hub.conftest import Hub
from tests.ui.test_glyphs import odd_characters
from tests.ui.test_ui import open_ui, stored

# Heights of the drawn rows, and how many of them lie wholly inside the list's viewport.
MEASURE = """() => {
    const box = document.querySelector('[data-testid=rows]').getBoundingClientRect();
    const rows = [...document.querySelectorAll('[data-testid=row]')]
        .map(r => r.getBoundingClientRect());
    return {
        heights: [...new Set(rows.map(r => Math.round(r.height)))],
        visible: rows.filter(r => r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5).length,
        filled: rows.length > 0 && Math.max(...rows.map(r => r.bottom)) >= box.bottom,
    };
}"""


def size(n: int) -> str:
    """format.ts's bytes()."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def measure(page: Page) -> dict:
    """Once rows fill the view (the list knows its height)."""
    page.wait_for_function(f"() => ({MEASURE})().filled")
    return page.evaluate(MEASURE)


def test_compact_fits_more_rows_and_detailed_adds_a_second_line(
    page: Page, ui_hub: Hub, api
) -> None:
    calls = stored(api)
    assert len(calls) > 100  # more than fit in view either way
    open_ui(page, ui_hub)
    expect(page.get_by_test_id("density-compact")).to_have_attribute("aria-pressed", "true")
    first = page.locator('[data-testid="row"]').first
    expect(first).to_have_attribute("data-id", calls[0]["id"])
    compact = measure(page)
    expect(first.locator(".line2")).to_have_count(0)

    page.get_by_test_id("density-detailed").click()
    expect(page.get_by_test_id("density-detailed")).to_have_attribute("aria-pressed", "true")
    expect(first.get_by_test_id("sizes")).to_be_visible()
    detailed = measure(page)
    assert len(compact["heights"]) == len(detailed["heights"]) == 1  # fixed per density
    assert detailed["heights"][0] > compact["heights"][0]
    assert compact["visible"] > detailed["visible"] > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "density_detailed.png"))  # the test's own: compact
    print(f"rows in view: compact {compact['visible']}, detailed {detailed['visible']}")

    # the second line says what the API says of the call
    call = calls[0]
    response = call["response"]
    sizes = f"request {size(call['request']['body_size'])} · " + (
        f"response {size(response['body_size'])}" if response else "no response"
    )
    expect(first.get_by_test_id("sizes")).to_have_text(sizes)
    day = datetime.fromtimestamp(call["timestamp_ns"] / 1e9, UTC).strftime("%Y-%m-%d")
    expect(first.locator(".l2-time")).to_have_text(day)  # the page runs in UTC
    assert odd_characters(page) == []  # no missing-glyph boxes

    # remembered: a reload comes back detailed, and compact again on request
    page.reload()
    expect(page.get_by_test_id("density-detailed")).to_have_attribute("aria-pressed", "true")
    expect(page.locator('[data-testid="row"]').first.get_by_test_id("sizes")).to_be_visible()
    assert measure(page) == detailed
    page.get_by_test_id("density-compact").click()
    expect(page.locator('[data-testid="row"] .line2')).to_have_count(0)
    assert measure(page) == compact
