"""From a call to the tools people already use (issue 17): its packets downloaded as a
pcap that tshark reads, and "Open in replay" with the `wiretide replay` command that a
shell then runs against a real HTTP server."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import GOLDEN, needs, pipeline_env, run_wiretide
from tests.hub.conftest import Hub, start_hub
from tests.ui.test_detail import open_detail
from tests.ui.test_ui import stored


def _uri(call: dict) -> str:
    query = call["request"]["query"]
    return call["request"]["path"] + (f"?{query}" if query else "")


def connections(api) -> list[list[dict]]:  # noqa: ANN001
    """The stored HTTP calls by connection, each in order, where none overlaps the next
    (a keep-alive connection, not pipelined)."""
    flows: dict[str, list[dict]] = {}
    for call in stored(api, "http"):
        flows.setdefault(call["flow_id"], []).append(call)
    out = []
    for calls in flows.values():
        calls.sort(key=lambda c: c["timestamp_ns"])
        ends = [c["timestamp_ns"] + (c["elapsed_ms"] or 0) * 1e6 for c in calls]
        if all(end < c["timestamp_ns"] for end, c in zip(ends, calls[1:], strict=False)):
            out.append(calls)
    return out


def middle_of_a_keep_alive_connection(api) -> dict:  # noqa: ANN001
    """An HTTP call with calls before and after it on its connection: the one whose
    packets must come without its neighbours'."""
    return next(c for calls in connections(api) for c in calls[1:-1] if c["response"])


def tshark_fields(
    pcap: Path, port: int, display: str | None, *fields: str
) -> list[tuple[str, ...]]:
    shown = ["-Y", display] if display else []
    proc = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},http", *shown, "-T", "fields"]
        + [arg for f in fields for arg in ("-e", f)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [tuple(line.split("\t")) for line in proc.stdout.splitlines()]


@needs("tshark")
def test_download_the_packets_of_this_call(page: Page, ui_hub: Hub, api, tmp_path: Path) -> None:
    call = middle_of_a_keep_alive_connection(api)
    port = call["dst"]["port"]
    # Its connection's export (a second around the call) holds the neighbours too:
    whole = tmp_path / "around.pcap"
    got = api.get("/api/export.pcap", params={"q": f'id == "{call["id"]}"'})
    assert got.status_code == 200, got.text
    whole.write_bytes(got.content)
    assert len(tshark_fields(whole, port, "http.request", "http.request.uri")) > 1

    open_detail(page, ui_hub, api, call["id"])
    with page.expect_download() as info:
        page.get_by_test_id("download-packets").click()
    download = info.value
    assert download.suggested_filename == f"wiretide-{call['id']}.pcap"
    pcap = tmp_path / download.suggested_filename
    download.save_as(pcap)

    requests = tshark_fields(pcap, port, "http.request", "http.request.method", "http.request.uri")
    assert requests == [(call["request"]["method"], _uri(call))]
    responses = tshark_fields(pcap, port, "http.response", "http.response.code")
    assert responses == [(str(call["response"]["status"]),)]
    frames = tshark_fields(pcap, port, None, "frame.number")
    expect(page.get_by_test_id("packets-note")).to_have_text(f"{len(frames)} packets")


@needs("tshark")
def test_the_first_call_of_a_connection_comes_with_its_handshake(api, tmp_path: Path) -> None:
    """What the button downloads (export.pcap?exact=true) for a connection's first call:
    the TCP handshake before it, not the next call after it."""
    first, second = next(calls[:2] for calls in connections(api) if len(calls) > 1)
    got = api.get("/api/export.pcap", params={"q": f'id == "{first["id"]}"', "exact": "true"})
    assert got.status_code == 200, got.text
    pcap = tmp_path / "first.pcap"
    pcap.write_bytes(got.content)
    port = first["dst"]["port"]
    syn = tshark_fields(pcap, port, "tcp.flags.syn == 1", "tcp.flags.ack")
    assert sorted(syn) == [("0",), ("1",)]  # SYN, SYN-ACK
    requests = tshark_fields(pcap, port, "http.request", "http.request.uri")
    assert requests == [(_uri(first),)] != [(_uri(second),)]
    frames = tshark_fields(pcap, port, None, "frame.number")
    assert got.headers["x-wiretide-packets"] == str(len(frames))


TOKEN = "call-tools-token"


@pytest.fixture(scope="module")
def token_hub(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Hub:
    """A hub beyond loopback (it wants a token) over the golden HTTP capture's calls."""
    env = pipeline_env(kafka, tmp_path_factory.mktemp("tools-token") / "data")
    run_wiretide(["tap", "--pcap", str(GOLDEN / "e2e" / "http_basic.pcap"), "--quiet"], env)
    running = start_hub(dict(env, WIRETIDE_HUB_TOKEN=TOKEN), listen="0.0.0.0:0")
    yield running
    running.stop()


@needs("tshark")
def test_packets_download_from_a_hub_that_wants_a_token(
    page: Page, token_hub: Hub, tmp_path: Path
) -> None:
    """The page opened with ?token= downloads with it (a bare link to the API would be
    refused: it cannot carry the Authorization header)."""
    with token_hub.client(TOKEN) as api:
        call = middle_of_a_keep_alive_connection(api)
    q = {"q": f'id == "{call["id"]}"', "exact": "true"}
    with token_hub.client() as anonymous:
        assert anonymous.get("/api/export.pcap", params=q).status_code == 401
    page.goto(f"{token_hub.url}/?token={TOKEN}")
    page.get_by_test_id("kfl-input").fill(f'id == "{call["id"]}"')
    page.locator(f'[data-testid="row"][data-id="{call["id"]}"]').click()
    with page.expect_download() as info:
        page.get_by_test_id("download-packets").click()
    pcap = tmp_path / "call.pcap"
    info.value.save_as(pcap)
    port = call["dst"]["port"]
    requests = tshark_fields(pcap, port, "http.request", "http.request.method", "http.request.uri")
    assert requests == [(call["request"]["method"], _uri(call))]


class Recorder(ThreadingHTTPServer):
    """A real HTTP server that keeps every request it reads."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                outer.seen.append(
                    dict(
                        method=self.command,
                        target=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=self.rfile.read(size),
                    )
                )
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def recorder() -> Recorder:
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


def open_in_replay(page: Page, hub: Hub, api, call: dict) -> None:  # noqa: ANN001
    open_detail(page, hub, api, call["id"])
    page.get_by_test_id("open-replay").click()
    expect(page.get_by_test_id("tab-replay")).to_have_class("on")
    panel = page.get_by_test_id("replay-this")
    expect(panel).to_have_attribute("data-call", call["id"])
    expect(panel).to_contain_text(f"{call['request']['method']} {call['request']['path']}")


def words(command: str) -> list[str]:
    """The command's words as bash reads them (a backslash-newline joins lines)."""
    return shlex.split(command.replace("\\\n", ""))


def copy_command(page: Page, target: str) -> str:
    page.get_by_test_id("replay-target").fill(target)
    page.get_by_test_id("copy-replay").click()
    expect(page.get_by_test_id("replay-copy-note")).to_have_text("copied")
    shown = page.get_by_test_id("replay-command").inner_text()
    assert page.evaluate("navigator.clipboard.readText()") == shown
    return shown


def run_in_bash(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env = dict(env, PATH=path)
    proc = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_open_in_replay_gives_the_command_that_sends_this_call(
    page: Page, ui_hub: Hub, ui_env, api, recorder: Recorder
) -> None:
    plain = [
        api.get(f"/api/calls/{c['id']}").json()
        for c in stored(api, 'http and method == "GET" and request.query != ""')
    ]
    call = next(c for c in plain if c["response"] and "[REDACTED]" not in json.dumps(c["request"]))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_in_replay(page, ui_hub, api, call)
    kfl = f'id == "{call["id"]}"'
    shown = page.get_by_test_id("replay-command")
    expect(shown).to_have_text(f"wiretide replay '{kfl}' \\\n  --target 'http://HOST:PORT'")
    expect(page.get_by_test_id("replay-note")).to_have_count(0)

    command = copy_command(page, recorder.url)
    assert words(command) == ["wiretide", "replay", kfl, "--target", recorder.url]
    run_in_bash(command, ui_env)
    assert recorder.seen, "the server got the call"
    for got in recorder.seen:  # learning what is volatile sends a GET more than once
        assert (got["method"], got["target"]) == ("GET", _uri(call))
    run_id = recorder.seen[-1]["headers"]["x-wiretide-replay"]

    # The run lists on the Replay page once the hub has it, with the API's counts.
    deadline = time.monotonic() + 120
    while not any(r["run_id"] == run_id for r in api.get("/api/replay/runs").json()):
        assert time.monotonic() < deadline, f"run {run_id} never reached the hub"
        time.sleep(1)
    page.get_by_test_id("replay-refresh").click()
    expect(page.locator(f'[data-testid="replay-run"][data-run="{run_id}"]')).to_have_class(
        "selected"
    )
    counts = api.get(f"/api/replay/runs/{run_id}").json()["counts"]
    shown_counts = page.get_by_test_id("replay-counts")
    for outcome in ("matched", "changed", "failed"):
        expect(shown_counts).to_have_attribute(f"data-{outcome}", str(counts[outcome]))


def test_a_post_with_a_redacted_password_asks_for_it(
    page: Page, ui_hub: Hub, ui_env, api, recorder: Recorder
) -> None:
    posts = [api.get(f"/api/calls/{c['id']}").json() for c in stored(api, 'path == "/login"')]
    call = next(c for c in posts if '"[REDACTED]"' in (c["request"]["body"] or ""))
    recorded = json.loads(call["request"]["body"])
    hidden = [k for k, v in recorded.items() if v == "[REDACTED]"]
    assert "password" in hidden
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_in_replay(page, ui_hub, api, call)
    command = copy_command(page, recorder.url)
    args = words(command)
    # sent once (no learning pass), and only because it is allowed in so many words
    assert args[args.index("--allow-methods") + 1 :][:3] == ["POST", "--learn", "0"]
    set_json = [args[i + 1] for i, a in enumerate(args) if a == "--set-json"]
    assert set_json == [f"$.{k}=<{k}>" for k in hidden]
    expect(page.get_by_test_id("replay-note")).to_contain_text("Replace each <...>")

    run_in_bash(command, ui_env)
    [got] = recorder.seen
    assert (got["method"], got["target"]) == ("POST", "/login")
    assert got["headers"]["x-wiretide-replay"]
    # each placeholder where the user fills the value in, the rest as recorded
    filled = {k: f"<{k}>" if k in hidden else v for k, v in recorded.items()}
    assert json.loads(got["body"]) == filled


def plain_get(api) -> dict:  # noqa: ANN001
    """A GET with a query string and nothing redacted: sent as recorded."""
    calls = stored(api, 'http and method == "GET" and request.query != ""')
    full = (api.get(f"/api/calls/{c['id']}").json() for c in calls)
    return next(c for c in full if c["response"] and "[REDACTED]" not in json.dumps(c["request"]))


def test_run_now_sends_the_call_from_the_hub_and_shows_its_run(
    page: Page, ui_hub: Hub, api, recorder: Recorder
) -> None:
    call = plain_get(api)
    open_in_replay(page, ui_hub, api, call)
    expect(page.get_by_test_id("run-replay")).to_be_disabled()  # no target yet
    page.get_by_test_id("replay-target").fill(recorder.url)
    page.get_by_test_id("run-replay").click()
    row = page.locator('[data-testid="replay-run"].selected')
    expect(row).to_have_count(1, timeout=120_000)

    [got] = recorder.seen  # once: no learning pass from the hub
    assert (got["method"], got["target"]) == ("GET", _uri(call))
    run_id = got["headers"]["x-wiretide-replay"]
    expect(row).to_have_attribute("data-run", run_id)
    report = api.get(f"/api/replay/runs/{run_id}").json()
    assert report["counts"]["total"] == 1
    shown = page.get_by_test_id("replay-counts")
    for outcome in ("matched", "changed", "failed"):
        expect(shown).to_have_attribute(f"data-{outcome}", str(report["counts"][outcome]))
    # the recorder's "ok" is not the recorded answer: the call shows as changed
    changed = page.locator(f'[data-testid="replay-call"][data-path="{call["request"]["path"]}"]')
    expect(changed).to_have_attribute("data-outcome", "changed")


def test_run_now_refuses_what_the_command_must_do(
    page: Page, ui_hub: Hub, api, recorder: Recorder
) -> None:
    """A POST whose body the capture redacted is not sent from the hub: the page says
    why and points at the command; a target that is not a URL is refused in one line."""
    posts = [api.get(f"/api/calls/{c['id']}").json() for c in stored(api, 'path == "/login"')]
    call = next(c for c in posts if '"[REDACTED]"' in (c["request"]["body"] or ""))
    open_in_replay(page, ui_hub, api, call)
    page.get_by_test_id("replay-target").fill(recorder.url)
    page.get_by_test_id("run-replay").click()
    error = page.get_by_test_id("replay-run-error")
    expect(error).to_have_text(
        "not sent: method POST not allowed; copy the command and give --allow-methods POST"
    )
    page.get_by_test_id("replay-target").fill("127.0.0.1:1")
    page.get_by_test_id("run-replay").click()
    expect(error).to_have_text("target '127.0.0.1:1': expected a URL (http://HOST:PORT)")
    assert recorder.seen == []
    # JSON only, so a cross-site form cannot start a run
    body = json.dumps({"call_id": plain_get(api)["id"], "target": recorder.url})
    form = api.post("/api/replay/runs", content=body, headers={"content-type": "text/plain"})
    assert form.status_code in (400, 415), form.text
    assert recorder.seen == []
