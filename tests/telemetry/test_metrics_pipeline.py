"""The pipeline's own /metrics, as a cluster runs it: a stream worker and a writer as
separate processes with --metrics-port (the writer also serving the hub, as in `tap`),
an agent publishing the golden captures. Their counters move by exactly what was stored:
calls per protocol, requests without responses and responses without requests per
protocol, gaps, rows and inserts; the hub beside the writer serves the traffic's RED
metrics and the writer's counters on one page."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, run_wiretide, stop_all
from tests.telemetry.metrics_support import (  # noqa: F401 (cluster_pcap: a fixture)
    cluster_pcap,
    count,
    env_with_endpoints,
    promtool,
    scrape,
    stored_calls,
    total,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(env: dict[str, str], log, *args: str) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen(
        [sys.executable, "-m", "wiretide", *args],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _poll(url: str) -> dict[str, list] | None:
    try:
        return scrape(url)
    except (httpx.HTTPError, AssertionError):
        return None


@pytest.fixture(scope="module")
def pipeline(kafka, cluster_pcap, tmp_path_factory):  # noqa: F811
    """(worker's metrics, writer's metrics, hub's metrics, stored calls, exposition texts)
    once every call the agent published is stored."""
    tmp = tmp_path_factory.mktemp("pipeline")
    env = env_with_endpoints(kafka, tmp / "data")
    ports = {name: _free_port() for name in ("worker", "sink", "hub")}
    urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
    log = (tmp / "processes.log").open("w")
    procs = [
        _start(env, log, "worker", "--metrics-port", str(ports["worker"])),
        _start(env, log, "sink", "--metrics-port", str(ports["sink"]), "--serve",
               f"127.0.0.1:{ports['hub']}"),
    ]  # fmt: skip
    try:
        run_wiretide(["agent", "--pcap", str(cluster_pcap)], env)
        deadline, last, steady = time.monotonic() + 300, None, 0
        while time.monotonic() < deadline:  # generous: a busy machine
            assert all(p.poll() is None for p in procs), (tmp / "processes.log").read_text()
            worker, sink = _poll(urls["worker"]), _poll(urls["sink"])
            if worker and sink and "wiretide_worker_calls" in worker:
                by_protocol = total(worker["wiretide_worker_calls"], "wiretide_worker_calls_total")
                emitted = sum(by_protocol.values())
                rows = total(sink["wiretide_sink_rows"], "wiretide_sink_rows_total").get((), 0)
                now = (emitted, rows)
                steady = steady + 1 if now == last and rows == emitted > 0 else 0
                last = now
                if steady >= 3:
                    break
            time.sleep(1)
        else:
            raise AssertionError(f"not everything stored in time: {last}")
        calls = stored_calls(env)
        texts = {name: httpx.get(url, timeout=60).text for name, url in urls.items()}
        yield worker, sink, scrape(urls["hub"]), calls, texts
    finally:
        stop_all(procs)
        log.close()


def test_worker_counts_calls_and_what_it_could_not_pair_per_protocol(pipeline):
    worker, _, _, calls, _ = pipeline
    emitted = total(worker["wiretide_worker_calls"], "wiretide_worker_calls_total", ("protocol",))
    assert emitted == count(calls, lambda c: (c["protocol"],))
    for family, flag in (
        ("wiretide_worker_requests_without_response", "no_response"),
        ("wiretide_worker_responses_without_request", "no_request"),
        ("wiretide_worker_calls_with_gap", "gap"),
    ):
        got = total(worker.get(family, []), family + "_total", ("protocol",))
        assert got == count([c for c in calls if flag in c["flags"]], lambda c: (c["protocol"],))
    unanswered = total(
        worker["wiretide_worker_requests_without_response"],
        "wiretide_worker_requests_without_response_total",
    )
    assert unanswered[()] > 0  # the golden captures hold unanswered requests


def test_writer_counts_rows_and_times_inserts(pipeline):
    _, sink, _, calls, _ = pipeline
    assert total(sink["wiretide_sink_rows"], "wiretide_sink_rows_total")[()] == len(calls)
    inserts = total(
        sink["wiretide_sink_insert_duration_seconds"], "wiretide_sink_insert_duration_seconds_count"
    )[()]
    assert inserts >= 1
    rows = sink["wiretide_sink_insert_rows"]
    assert total(rows, "wiretide_sink_insert_rows_sum")[()] == len(calls)
    assert total(rows, "wiretide_sink_insert_rows_count")[()] == inserts


def test_hub_beside_the_writer_serves_red_and_the_writers_counters(pipeline):
    _, _, hub, calls, _ = pipeline
    red = total(hub["wiretide_calls"], "wiretide_calls_total", ("protocol",))
    assert red == count(calls, lambda c: (c["protocol"],))
    assert total(hub["wiretide_sink_rows"], "wiretide_sink_rows_total")[()] == len(calls)


def test_promtool_accepts_every_exposition(pipeline):
    tool = promtool()
    for name, text in pipeline[4].items():
        checked = subprocess.run(
            [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"
