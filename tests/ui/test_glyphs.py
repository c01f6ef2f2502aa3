"""No missing-glyph boxes on a machine without emoji or symbol fonts: every piece of text
the UI itself renders is ASCII or common Latin-1/General Punctuation (which any text font
has), and symbols (TLS mark, arrows, close, live dot) are inline SVG."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.hub.conftest import Hub
from tests.ui.test_ui import open_ui, stored, type_filter, wait_for_rows

# Punctuation every Latin text font carries (DejaVu, Liberation, Noto Sans).
COMMON = set("–—…·×µ")

# Text nodes of the page outside the captured data (bodies and header values are the
# user's bytes, shown as they came), with the element they sit in.
RENDERED_TEXT = """() => {
    const out = [];
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        const el = n.parentElement;
        if (!el || el.closest('pre, .headers td, title')) continue;
        if (!el.getClientRects().length) continue;
        out.push([n.textContent, el.className.baseVal ?? el.className]);
    }
    for (const el of document.querySelectorAll('[placeholder]'))
        out.push([el.getAttribute('placeholder'), 'placeholder']);
    return out;
}"""


def odd_characters(page: Page) -> list[tuple[str, str]]:
    return [
        (ch, f"{text!r} in .{cls}")
        for text, cls in page.evaluate(RENDERED_TEXT)
        for ch in text
        if not (ch.isascii() or ch in COMMON)
    ]


def test_ui_text_is_ascii_and_symbols_are_svg(page: Page, ui_hub: Hub, api) -> None:
    tls = stored(api, "tls == true")
    open_ui(page, ui_hub)
    expect(page.get_by_test_id("live")).to_have_text("live")
    expect(page.get_by_test_id("live").locator("svg")).to_be_visible()
    assert odd_characters(page) == []
    # a call with a TLS mark when the captures hold one, else any: its detail open
    kfl = "tls == true" if tls else "http"
    type_filter(page, kfl)
    wanted = [c["id"] for c in stored(api, kfl)]
    wait_for_rows(page, wanted)
    page.locator(f'[data-testid="row"][data-id="{wanted[0]}"]').click()
    expect(page.get_by_test_id("detail")).to_be_visible()
    expect(page.get_by_test_id("request")).not_to_contain_text("Loading")
    if tls:
        expect(page.locator('[data-testid="row"] .tls svg').first).to_be_visible()
        expect(page.get_by_test_id("detail-tls").locator("svg")).to_be_visible()
    expect(page.locator(".row.head svg")).to_be_visible()  # Source -> Destination
    expect(page.get_by_test_id("detail").locator("button.close svg")).to_be_visible()
    assert odd_characters(page) == []
    for tab in ("map", "coverage", "replay"):
        page.get_by_test_id(f"tab-{tab}").click()
        page.wait_for_timeout(500)  # let it load; an error is text too, checked alike
        assert odd_characters(page) == [], tab
