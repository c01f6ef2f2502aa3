"""Replay end to end, as a user runs it: calls to the v1 servers (HTTP and gRPC) recorded
with tcpdump and stored by `wiretide tap --pcap`, replayed by `wiretide replay` at v2,
and what `wiretide replay report` and the hub say about it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import pipeline_env, run_wiretide
from tests.hub.conftest import start_hub
from tests.replay import servers
from tests.replay.conftest import GRPC_SKUS, HTTP_PATHS, Recording
from wiretide.broker import free_port_pair
from wiretide.replay.diff import percentiles

CALLS = 2 * len(HTTP_PATHS) + len(GRPC_SKUS)
# Calls a v2 replay changes: both calls of each changed path, and gRPC sku "b".
CHANGED = 2 * len(servers.CHANGED_IN_V2) + 1
EXPECTED = {**servers.CHANGED_IN_V2, servers.GRPC_METHOD: {'body:$["2"]'}}


@pytest.fixture(scope="module")
def stored(v1_recording: Recording, kafka: str, tmp_path_factory) -> dict[str, str]:
    """A pipeline environment whose store holds the recorded v1 calls."""
    env = pipeline_env(kafka, Path(tmp_path_factory.mktemp("e2e")) / "data")
    run_wiretide(["tap", "--quiet", "--pcap", str(v1_recording.pcap)], env)
    return env


def _targets(rec: Recording, v2_ports: tuple[int, int]) -> list[str]:
    http, grpc = v2_ports
    return [
        "--target", f"127.0.0.1:{rec.http_port}=http://127.0.0.1:{http}",
        "--target", f"127.0.0.1:{rec.grpc_port}=http://127.0.0.1:{grpc}",
    ]  # fmt: skip


def _changed(report: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v in report["changed"]:
        key = v["path"] if v["protocol"] == "grpc" else f"{v['method']} {v['path']}"
        out.setdefault(key, set()).update(d["where"] for d in v["differences"])
    return out


def test_replay_at_v2_reports_exactly_the_changed_calls(stored, v1_recording, v2_ports, recorded):
    args = ["replay", *_targets(v1_recording, v2_ports), "--speed", "max", "--run-id", "v2-a"]
    summary = json.loads(run_wiretide([*args, "--json"], stored).stdout)
    assert summary["sent"] == CALLS and summary["verdicts"] == {
        "matched": CALLS - CHANGED,
        "changed": CHANGED,
    }
    report = json.loads(run_wiretide(["replay", "report", "v2-a", "--json"], stored).stdout)
    assert report["counts"] == {
        "total": CALLS,
        "matched": CALLS - CHANGED,
        "changed": CHANGED,
        "failed": 0,
    }
    assert _changed(report) == EXPECTED
    price = next(v for v in report["changed"] if v["path"] == "/items/3")
    assert price["differences"] == [{"where": "body:$.price", "recorded": "30", "replayed": "35"}]
    # Latency: the recorded side is what the capture measured; v2's /slow takes 0.3 s,
    # and its two calls of 21 are the top ranks, so p95 and p99 are at least that.
    was = percentiles([c.elapsed_ns for c in recorded])
    lat = report["latency"]
    assert (lat["recorded"]["p50_ns"], lat["recorded"]["p99_ns"]) == (was.p50_ns, was.p99_ns)
    assert lat["replayed"]["count"] == CALLS
    assert lat["replayed"]["p95_ns"] >= servers.SLOW_V2_S * 1e9
    text = run_wiretide(["replay", "report", "v2-a"], stored).stdout
    assert f"{CALLS} calls sent, {CALLS - CHANGED} matched, {CHANGED} changed" in text


def test_five_copies_at_max_speed_are_counted_five_times(stored, v1_recording, v2_ports):
    args = ["replay", *_targets(v1_recording, v2_ports), "--speed", "max", "--copies", "5"]
    run_wiretide([*args, "--run-id", "v2-x5"], stored)
    report = json.loads(run_wiretide(["replay", "report", "v2-x5", "--json"], stored).stdout)
    assert report["counts"] == {
        "total": 5 * CALLS,
        "matched": 5 * (CALLS - CHANGED),
        "changed": 5 * CHANGED,
        "failed": 0,
    }
    assert {v["copy"] for v in report["changed"]} == {0, 1, 2, 3, 4}
    text = run_wiretide(["replay", "report", "v2-x5"], stored).stdout
    # the copies of a call that changed the same way are one entry
    assert text.count("GET /items/3 -> ") == 2 and "(copies 0-4)" in text
    assert report["latency"]["replayed"]["count"] == 5 * CALLS
    runs = json.loads(run_wiretide(["replay", "report", "--json"], stored).stdout)
    assert {r["run_id"] for r in runs} >= {"v2-x5"}


def test_a_dead_target_fails_every_call(stored, v1_recording):
    dead = ["--target", "http://127.0.0.1:9"]  # discard port: nothing listens
    run_wiretide(["replay", *dead, "--speed", "max", "--learn", "0", "--run-id", "dead"], stored)
    report = json.loads(run_wiretide(["replay", "report", "dead", "--json"], stored).stdout)
    assert report["counts"]["failed"] == CALLS and report["counts"]["matched"] == 0
    assert all(v["error"] and v["replayed"]["status"] is None for v in report["failed"])


def test_while_a_hub_holds_the_store_it_shows_runs_from_the_topic(stored, v1_recording, v2_ports):
    hub = start_hub(stored)
    try:
        args = ["replay", *_targets(v1_recording, v2_ports), "--speed", "max"]
        proc = run_wiretide([*args, "--run-id", "via-hub"], stored)
        # the run could not open the store; Kafka carries its results to the hub
        assert "results not stored" not in proc.stderr
        with hub.client(hub.token) as client:
            runs = client.get("/api/replay/runs").json()
            run = next(r for r in runs if r["run_id"] == "via-hub")
            assert run["counts"]["changed"] == CHANGED
            report = client.get("/api/replay/runs/via-hub").json()
            assert _changed(report) == EXPECTED
            assert client.get("/api/replay/runs/nope").status_code == 404
        # the CLI asks the hub that holds the store
        cli = json.loads(run_wiretide(["replay", "report", "via-hub", "--json"], stored).stdout)
        assert cli["counts"] == report["counts"]
    finally:
        hub.stop()


def test_with_the_data_dirs_own_broker_results_reach_the_hub(v1_recording, v2_ports, tmp_path):
    """No WIRETIDE_KAFKA: tap starts the data dir's broker; the replay finds it running and
    puts its results there, and the hub holding the store reads them from it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRETIDE_")}
    data = tmp_path / "data"
    env.update(
        WIRETIDE_DATA=str(data), WIRETIDE_KAFKA_PORT=str(free_port_pair()), PYTHONUNBUFFERED="1"
    )
    try:
        run_wiretide(["tap", "--quiet", "--no-ui", "--pcap", str(v1_recording.pcap)], env)
        hub = start_hub(env)
        try:
            args = ["replay", *_targets(v1_recording, v2_ports), "--speed", "max"]
            run_wiretide([*args, "--run-id", "own-broker"], env)
            shown = run_wiretide(["replay", "report", "own-broker", "--json"], env).stdout
            report = json.loads(shown)
            assert report["counts"]["changed"] == CHANGED and _changed(report) == EXPECTED
        finally:
            hub.stop()
    finally:
        run_wiretide(["broker", "stop"], env, check=False)
