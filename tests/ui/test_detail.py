"""The call detail as a way into the data: the request's query string, values that click
into the KFL bar, and the call copied as a curl command."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def test_copy_as_curl_leaves_redacted_values_visible(page: Page, ui_hub: Hub, api) -> None:
    kfl = 'http and method == "POST" and request.headers["authorization"] == "[REDACTED]"'
    found = stored(api, kfl) or stored(api, 'http and method == "POST"')
    call = api.get(f"/api/calls/{found[0]['id']}").json()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_detail(page, ui_hub, api, call["id"])
    page.get_by_test_id("copy-curl").click()
    expect(page.get_by_test_id("curl-note")).to_have_text("copied")
    shown = page.get_by_test_id("curl").inner_text()
    assert page.evaluate("navigator.clipboard.readText()") == shown

    args = shlex.split(shown)
    request = call["request"]
    assert args[:3] == ["curl", "-X", request["method"]]
    headers = request["headers"]
    host = headers.get("host") or f"{call['dst']['ip']}:{call['dst']['port']}"
    query = f"?{request['query']}" if request["query"] else ""
    assert args[3] == f"http{'s' if call['tls'] else ''}://{host}{request['path']}{query}"
    sent = [args[i + 1] for i, a in enumerate(args) if a == "-H"]
    skip = {"host", "content-length", "transfer-encoding", "connection"}
    assert sent == [f"{n}: {v}" for n, v in headers.items() if n.lower() not in skip]
    assert any(v == "[REDACTED]" for v in headers.values())
    assert any(h.endswith(": [REDACTED]") for h in sent)  # left visible, not filled in
    if request["body"]:
        assert args[args.index("--data-raw") + 1] == request["body"]
    if not call["tls"]:
        got = run_against_a_server(shown)
        assert got["method"] == request["method"]
        assert got["target"] == request["path"] + query
        assert got["body"] == (request["body"] or "").encode()
        for name, value in headers.items():
            if name.lower() not in skip:
                assert got["headers"][name.lower()] == value


def run_against_a_server(command: str) -> dict:
    """Runs the copied command in a shell, aimed (curl --connect-to) at a real HTTP server
    here, and returns the request that server read."""
    seen: dict = {}

    class Record(BaseHTTPRequestHandler):
        def _any(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            seen.update(
                method=self.command,
                target=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(size),
            )
            self.send_response(204)
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Record) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        aim = f" --connect-to ::127.0.0.1:{server.server_address[1]} -sS -o /dev/null"
        proc = subprocess.run(
            ["bash", "-c", command + aim], capture_output=True, text=True, timeout=120
        )
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    return seen
