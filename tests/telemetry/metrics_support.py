"""Metrics end to end: the golden captures of every protocol, their clients and servers
moved to made-up pods and services (tests/e2e/test_map.py's plan), replayed through a
real broker into real chDB; /metrics scraped over HTTP and parsed by prometheus_client."""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producers.pcap_writer import capture_file
from tests.conftest import env_with_endpoints as named_env
from tests.conftest import run_wiretide
from tests.e2e.test_map import ENDPOINTS, OWNER, _failed, _moved, _plan

HTTP_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"}


@pytest.fixture(scope="session")
def cluster_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every golden capture in one file, each client and server on its planned IPs."""
    segments = []
    for capture, (client, server) in _plan().items():
        segments += _moved(capture, client, server)
    merged = tmp_path_factory.mktemp("metrics") / "cluster.pcap"
    with merged.open("wb") as out:
        out.writelines(capture_file(segments))
    return merged


def env_with_endpoints(kafka: str, data: Path) -> dict[str, str]:
    """A pipeline environment whose endpoints topic names the plan's pods and services."""
    return named_env(kafka, data, ENDPOINTS)


def stored_calls(env: dict[str, str]) -> list[dict]:
    out = run_wiretide(["query", "--json", "--limit", "1000000"], env).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def scrape(url: str, token: str | None = None) -> dict[str, list]:
    """GET url; metric family name -> samples (prometheus_client's own parser)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(url, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(answer.text)}


def total(samples: list, name: str, by: tuple[str, ...] = ()) -> dict[tuple, float]:
    """Sum of the samples named `name`, grouped by the labels `by`."""
    out: dict[tuple, float] = defaultdict(float)
    for s in samples:
        if s.name == name:
            out[tuple(s.labels[k] for k in by)] += s.value
    return dict(out)


# What the metrics' labels say of a call, restated from the call's JSON (ddl.py, RED).
def workload(side: dict) -> str:
    if side["pod"]:
        return OWNER[side["pod"]["name"]]
    if side["service"]:
        return side["service"]["name"]
    return "unknown"


def status_class(call: dict) -> str:
    status = call["response"]["status"] if call["response"] else 0
    if "no_response" in call["flags"]:
        return "none"
    if call["protocol"] in ("http", "http2", "gql") and 100 <= status <= 599:
        return f"{status // 100}xx"
    return "error" if _failed(call) else "ok"


def count(calls: list[dict], key) -> dict[tuple, float]:  # noqa: ANN001
    out: dict[tuple, float] = defaultdict(float)
    for c in calls:
        out[key(c)] += 1
    return dict(out)


def promtool() -> str:
    """Prometheus's own checker: $WIRETIDE_PROMTOOL, else `promtool` on PATH, else the one
    under ~/.cache/wiretide/promtool; the test is skipped without one (building it from
    Go modules took over 5 minutes here, so install.sh does not)."""
    found = os.environ.get("WIRETIDE_PROMTOOL") or shutil.which("promtool")
    cached = Path.home() / ".cache" / "wiretide" / "promtool" / "promtool"
    if not found and cached.is_file():
        found = str(cached)
    if not found:
        pytest.skip("no promtool (set WIRETIDE_PROMTOOL or put it on PATH)")
    return found
