"""/metrics end to end: the RED metrics a hub serves over the calls `wiretide tap`
stored equal what `wiretide query` returns for the same captures, per protocol and
status class, per workload pair, with errors, bytes and latency; their label values stay
bounded; the consumer lag of both groups is there per partition."""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest

from tests.conftest import run_wiretide
from tests.hub.conftest import empty_env, start_hub
from tests.telemetry.metrics_support import (  # noqa: F401 (cluster_pcap: a fixture)
    HTTP_METHODS,
    cluster_pcap,
    count,
    env_with_endpoints,
    promtool,
    scrape,
    status_class,
    stored_calls,
    total,
    workload,
)


@pytest.fixture(scope="module")
def tapped(kafka, cluster_pcap, tmp_path_factory):  # noqa: F811
    env = env_with_endpoints(kafka, tmp_path_factory.mktemp("red") / "data")
    proc = run_wiretide(["tap", "--quiet", "--pcap", str(cluster_pcap)], env)
    assert "Traceback" not in proc.stdout + proc.stderr
    return env


@pytest.fixture(scope="module")
def calls(tapped):
    return stored_calls(tapped)


@pytest.fixture(scope="module")
def scraped(tapped, calls):  # calls first: `query` opens the store the hub then holds
    hub = start_hub(tapped)
    try:
        text = scrape(f"{hub.url}/metrics")
    finally:
        hub.stop()
    return text


def test_request_counts_equal_the_stored_calls_per_protocol_and_status_class(scraped, calls):
    got = total(scraped["wiretide_calls"], "wiretide_calls_total", ("protocol", "status_class"))
    want = count(calls, lambda c: (c["protocol"], status_class(c)))
    assert got == want
    assert sum(got.values()) == len(calls) > 100
    classes = {cls for _, cls in got}
    assert {"2xx", "ok", "none"} <= classes and ({"4xx", "5xx", "error"} & classes)
    assert scraped["wiretide_hub_store_up"][0].value == 1


def test_workload_pairs_errors_and_bytes_match_the_calls(scraped, calls):
    by = ("src_workload", "dst_workload", "protocol")
    got = total(scraped["wiretide_calls"], "wiretide_calls_total", by)
    assert got == count(calls, lambda c: (workload(c["src"]), workload(c["dst"]), c["protocol"]))
    assert ("front", "catalogue", "http") in got and ("orders", "db", "postgresql") in got
    errors = total(scraped["wiretide_call_errors"], "wiretide_call_errors_total", ("protocol",))
    from tests.e2e.test_map import _failed

    want = count([c for c in calls if _failed(c)], lambda c: (c["protocol"],))
    assert {k: v for k, v in errors.items() if v} == want and want
    sent = total(scraped["wiretide_call_request_bytes"], "wiretide_call_request_bytes_total")
    assert sent[()] == sum(c["request"]["body_size"] for c in calls)
    got_back = total(scraped["wiretide_call_response_bytes"], "wiretide_call_response_bytes_total")
    assert got_back[()] == sum((c["response"] or {"body_size": 0})["body_size"] for c in calls)


def test_latency_histogram_counts_the_answered_calls(scraped, calls):
    samples = scraped["wiretide_call_duration_seconds"]
    answered = [c for c in calls if c["response"] and "push" not in c["flags"]]
    by_protocol = total(samples, "wiretide_call_duration_seconds_count", ("protocol",))
    assert {k: v for k, v in by_protocol.items() if v} == count(
        answered, lambda c: (c["protocol"],)
    )
    seconds = total(samples, "wiretide_call_duration_seconds_sum")[()]
    assert seconds == pytest.approx(sum(c["elapsed_ms"] for c in answered) / 1e3, rel=1e-6)
    within_10ms = total(samples, "wiretide_call_duration_seconds_bucket", ("le",))[("0.01",)]
    assert within_10ms == sum(1 for c in answered if c["elapsed_ms"] <= 10)


def test_label_values_stay_bounded(scraped, calls):
    labels = [s.labels for s in scraped["wiretide_calls"]]
    pods = {c[side]["pod"]["name"] for c in calls for side in ("src", "dst") if c[side]["pod"]}
    ips = {c[side]["ip"] for c in calls for side in ("src", "dst")}
    for lab in labels:
        assert lab["src_workload"] not in pods | ips and lab["dst_workload"] not in pods | ips
        if lab["protocol"] in ("http", "http2", "gql", "grpc"):
            assert lab["method"] in HTTP_METHODS | {"other"}
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,31}", lab["method"])
        assert re.fullmatch(r"[1-5]xx|ok|error|none", lab["status_class"])
    # fewer series than calls: the labels aggregate, they do not enumerate
    assert len(labels) < len(calls) / 2


def test_consumer_lag_per_group_and_partition_after_the_tap_is_zero(scraped, tapped):
    lag = scraped["wiretide_consumer_lag_messages"]
    prefix = tapped["WIRETIDE_PREFIX"]
    groups = {s.labels["group"] for s in lag}
    assert len(groups) == 2 and all(g.startswith(prefix) for g in groups)
    partitions = {(s.labels["group"], s.labels["partition"]) for s in lag}
    assert len(partitions) == 2 * 4  # WIRETIDE_PARTITIONS' default, per group
    calls_lag = [s.value for s in lag if s.labels["topic"].endswith("wiretide.calls")]
    assert calls_lag and sum(calls_lag) == 0


def test_promtool_accepts_the_exposition(tapped, calls):
    tool = promtool()
    hub = start_hub(tapped)
    try:
        text = httpx.get(f"{hub.url}/metrics", timeout=60).text
    finally:
        hub.stop()
    checked = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_metrics_beyond_loopback_want_the_hubs_token(tmp_path):
    """A hub listening on every interface answers /metrics only with its token (what
    the chart's ServiceMonitor sends); over an empty store it has no call series yet."""
    hub = start_hub(empty_env(tmp_path, WIRETIDE_HUB_TOKEN="metrics-token"), listen="0.0.0.0:0")
    try:
        denied = httpx.get(f"{hub.url}/metrics", timeout=60)
        assert denied.status_code == 401 and "error" in denied.json()
        families = scrape(f"{hub.url}/metrics", token="metrics-token")
    finally:
        hub.stop()
    assert families["wiretide_hub_store_up"][0].value == 1
    assert not families["wiretide_calls"]
    assert "process_cpu_seconds" in families  # the hub process's own
