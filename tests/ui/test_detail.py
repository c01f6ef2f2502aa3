"""The call detail as a way into the data: the request's query string, values that click
into the KFL bar, and the call copied as a curl command."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import parse_qsl

from playwright.sync_api import Page, expect

from schemas.serde import encode_call_batch
from tests.hub.conftest import Hub
from tests.ui.test_ui import (
    _calls_topic,
    _live_call,
    open_ui,
    stored,
    type_filter,
    wait_for_rows,
)


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


def kfl_text(page: Page) -> str:
    return page.get_by_test_id("kfl-input").input_value()


def pick(page: Page, field: str, shift: bool = False) -> None:
    selector = f'[data-testid="pick"][data-field={json.dumps(field)}]'
    value = page.get_by_test_id("detail").locator(selector)
    value.first.click(modifiers=["Shift"] if shift else [])


def test_clicking_values_in_the_detail_filters_on_them(page: Page, ui_hub: Hub, api) -> None:
    start = 'http and method == "GET"'
    calls = stored(api, start)
    with_auth = stored(api, f'{start} and request.headers["authorization"] == "[REDACTED]"')
    call = next(c for c in with_auth if c["response"] and c["request"]["path"] == "/api/users")
    status, path = call["response"]["status"], call["request"]["path"]
    open_ui(page, ui_hub)
    type_filter(page, start)
    wait_for_rows(page, [c["id"] for c in calls][: len(calls)])
    page.locator(f'[data-testid="row"][data-id="{call["id"]}"]').click()
    expect(page.get_by_test_id("request")).not_to_contain_text("Loading")

    pick(page, "path")
    want = f'{start} and path == "{path}"'
    expect(page.get_by_test_id("kfl-input")).to_have_value(want)
    wait_for_rows(page, [c["id"] for c in stored(api, want)])
    # shift-click: everything but this status
    pick(page, "response.status", shift=True)
    want += f" and response.status != {status}"
    expect(page.get_by_test_id("kfl-input")).to_have_value(want)
    wait_for_rows(page, [c["id"] for c in stored(api, want)])
    # a header value, redacted as stored: `[REDACTED]` is what the filter compares
    pick(page, 'request.headers["authorization"]')
    want += ' and request.headers["authorization"] == "[REDACTED]"'
    expect(page.get_by_test_id("kfl-input")).to_have_value(want)
    wait_for_rows(page, [c["id"] for c in stored(api, want)])


def test_pod_and_namespace_click_into_the_filter(page: Page, ui_hub: Hub, ui_env, api) -> None:
    """Names before addresses: a call between two known pods (sent live, as the capture
    publishes it) offers each side's pod and namespace as a filter."""
    open_ui(page, ui_hub)
    start = 'path == "/pick-pod"'
    type_filter(page, start)
    expect(page.get_by_test_id("count")).to_have_text("0 calls")
    expect(page.get_by_test_id("live")).to_have_text("live")
    call = dataclasses.replace(
        _live_call("/pick-pod", 200),
        src_pod="web-1",
        src_namespace="shop",
        dst_pod="db-0",
        dst_namespace="data",
    )
    producer, topic = _calls_topic(ui_env)
    producer.produce(topic, key=b"flow", value=encode_call_batch("flow", [call]))
    assert producer.flush(30) == 0
    page.locator(f'[data-testid="row"][data-id="{call.call_id}"]').click()
    expect(page.get_by_test_id("detail")).to_be_visible()

    pick(page, "src.pod.name")
    want = f'{start} and src.pod.name == "web-1"'
    expect(page.get_by_test_id("kfl-input")).to_have_value(want)
    pick(page, "dst.pod.namespace", shift=True)
    want += ' and dst.pod.namespace != "data"'
    expect(page.get_by_test_id("kfl-input")).to_have_value(want)
    assert api.get("/api/calls", params={"q": want}).status_code == 200
    expect(page.get_by_test_id("kfl-error")).to_have_count(0)
