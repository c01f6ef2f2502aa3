"""`wiretide replay` of stored calls: straight from the data dir's store, and through the
hub that holds it (as `wiretide query` does), with --since/--until; and the golden
GraphQL and HTTP/2 captures replayed at real servers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse.connect import open_store
from sinks.clickhouse.writer import CallWriter
from tests.conftest import ROOT, needs
from tests.hub.conftest import start_hub
from tests.replay.send_kit import access_log, http_server, nginx
from tests.replay.test_cli_replay import PCAP, SAFE_CALLS, marked, wiretide
from wiretide.replay.source import pcap_calls

DAY = "2026-11-25"  # the golden capture's day


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the golden capture's calls."""
    tmp = tmp_path_factory.mktemp("stored")
    with open_store(f"chdb://{tmp / 'data' / 'chdb'}", ttl_days=0) as store:
        CallWriter(store).write(pcap_calls(PCAP, "", None))
    return tmp


def test_stored_calls_are_replayed_within_the_window(data_dir: Path) -> None:
    with http_server() as (port, log):
        out = wiretide(data_dir, "--target", f"http://127.0.0.1:{port}", "--speed", "max",
                       "--since", f"{DAY}T00:00:00Z", "--until", f"{DAY}T23:59:59Z",
                       "--run-id", "stored", "--learn", "0", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["sent"] == SAFE_CALLS
    assert len(marked(log, "stored")) == SAFE_CALLS
    out = wiretide(data_dir, "--target", "http://127.0.0.1:9", "--until", f"{DAY}T00:00:00Z")
    assert out.returncode == 2 and "no calls match" in out.stderr


@pytest.fixture
def hub(data_dir: Path) -> Iterator[str]:
    running = start_hub({**os.environ, "WIRETIDE_DATA": str(data_dir / "data")})
    try:
        yield running.url
    finally:
        running.stop()


def test_stored_calls_come_through_the_hub_that_holds_the_store(data_dir: Path, hub) -> None:
    with http_server() as (port, log):
        out = wiretide(data_dir, "--target", f"http://127.0.0.1:{port}", "--speed", "max",
                       "--run-id", "via-hub", "--learn", "0",
                       'request.path == "/missing"')  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [s.path for s in marked(log, "via-hub")] == ["/missing", "/missing"]
    assert "results not stored: a running tap or hub holds the data dir" in out.stderr


def test_graphql_queries_are_sent_and_mutations_wait_for_allow_methods(tmp_path: Path) -> None:
    pcap = str(ROOT / "tests/golden/protocols/gql/basic.pcap")
    kinds = {
        c.call_id: dict(c.request_headers).get("graphql-operation-type")
        for c in pcap_calls(pcap, "", None)
    }
    with http_server() as (port, log):
        out = wiretide(tmp_path, "--pcap", pcap, "--target", f"http://127.0.0.1:{port}",
                       "--speed", "max", "--run-id", "gql", "--dry-run")  # fmt: skip
        assert out.returncode == 0, out.stderr
        out = wiretide(tmp_path, "--pcap", pcap, "--target", f"http://127.0.0.1:{port}",
                       "--speed", "max", "--run-id", "gql", "--learn", "0")  # fmt: skip
    assert out.returncode == 0, out.stderr
    sent = marked(log, "gql")
    queries = sum(1 for kind in kinds.values() if kind == "query")
    assert queries and len(sent) == queries
    assert all(s.path.startswith("/graphql") for s in sent)
    posted = [json.loads(s.body) for s in sent if s.method == "POST"]
    assert posted and all("query" in body or isinstance(body, list) for body in posted)
    if any(kind == "mutation" for kind in kinds.values()):
        assert "GraphQL mutation (POST)" in out.stdout


@needs("nginx")
def test_http2_capture_goes_out_as_http2(tmp_path: Path) -> None:
    pcap = str(ROOT / "tests/golden/protocols/http2/basic.pcap")
    with nginx(tmp_path) as (_, h2):
        out = wiretide(tmp_path, "--pcap", pcap, "--target", f"http://127.0.0.1:{h2}",
                       "--speed", "max", "--run-id", "h2", "--learn", "0", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    lines = [line for line in access_log(tmp_path) if line[3] == "h2"]
    assert summary["answered"] == len(lines) == 5  # the POST waits for --allow-methods
    assert {line[2] for line in lines} == {"HTTP/2.0"}
    assert sorted(line[1] for line in lines) == [
        "/gzip", "/hello?name=wire&lang=en", "/item/1", "/item/2", "/nope"
    ]  # fmt: skip
