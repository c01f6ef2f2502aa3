"""Results of a real replay (calls recorded from v1, replayed at v2) through the results
writer into Kafka and the store, and `wiretide replay report` over them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.config import Settings
from schemas.serde import decode_replay_result
from sinks.clickhouse.connect import open_store
from tests.conftest import pipeline_env, read_topic, run_wiretide
from tests.replay import servers
from tests.replay.conftest import replay
from wiretide.replay.diff import compare, latency, learn_volatile
from wiretide.replay.results import ResultWriter, replay_topic

RUN = "run-v2"


@pytest.fixture(scope="module")
def written(recorded, v2_ports, kafka, tmp_path_factory):
    """(environment, what was written): two copies of every call, written by the results
    writer to Kafka and the store; the first copy's results written a second time (a
    retried batch)."""
    env = pipeline_env(kafka, Path(tmp_path_factory.mktemp("report")) / "data")
    settings = Settings.from_env(env)
    volatile = learn_volatile(replay(recorded, *v2_ports), replay(recorded, *v2_ports))
    exchanges = [x for copy in (0, 1) for x in replay(recorded, *v2_ports, RUN, copy)]
    with open_store(settings.store_dsn, ttl_days=None) as store:
        with ResultWriter(settings, store) as writer:
            results = [writer.write(x, compare(x, volatile)) for x in exchanges]
        with ResultWriter(None, store) as again:
            again.write_results(results[: len(recorded)])
    return env, settings, results, exchanges


def test_every_result_reaches_the_topic_keyed_by_run(written, kafka):
    env, settings, results, _ = written
    messages = read_topic(kafka, replay_topic(settings))
    assert {m.key() for m in messages} == {RUN.encode()}
    assert [decode_replay_result(m.value()) for m in messages] == results


def test_report_counts_and_lists_the_changed_calls(written, recorded):
    env, _, results, exchanges = written
    report = json.loads(run_wiretide(["replay", "report", RUN, "--json"], env).stdout)
    changed_per_copy = len(servers.CHANGED_IN_V2) + 1  # and the gRPC sku "b"
    assert report["counts"] == {
        "total": 2 * len(recorded),
        "matched": 2 * (len(recorded) - 2 * len(servers.CHANGED_IN_V2) - 1),
        "changed": 2 * (2 * len(servers.CHANGED_IN_V2) + 1),
        "failed": 0,
    }
    assert changed_per_copy == 6
    shown = {(v["method"], v["path"], v["copy"]) for v in report["changed"]}
    assert ("GET", "/items/3", 1) in shown and ("POST", servers.GRPC_METHOD, 0) in shown
    price = next(v for v in report["changed"] if v["path"] == "/items/3")
    assert price["differences"] == [{"where": "body:$.price", "recorded": "30", "replayed": "35"}]
    assert '"price": 30' in price["recorded"]["body"] and '"price": 35' in price["replayed"]["body"]
    lat = latency(exchanges)
    assert report["latency"]["recorded"]["p50_ns"] == lat.recorded.p50_ns
    assert report["latency"]["replayed"]["p99_ns"] == lat.replayed.p99_ns
    assert report["latency"]["replayed"]["p99_ns"] >= servers.SLOW_V2_S * 1e9


def test_report_as_text_and_the_list_of_runs(written):
    env = written[0]
    text = run_wiretide(["replay", "report", RUN], env).stdout
    assert "matched" in text and "body:$.price: 30 -> 35" in text and "p95" in text
    runs = run_wiretide(["replay", "report"], env).stdout
    assert RUN in runs.splitlines()[1]


def test_an_unknown_run_is_one_line(written):
    proc = run_wiretide(["replay", "report", "nope"], written[0], check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no replay run 'nope'" in proc.stderr
