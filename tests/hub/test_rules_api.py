"""Rules and violations over the hub's API: a hub over calls that `wiretide tap --rules`
stored from the golden HTTP capture, with the same rules file in WIRETIDE_RULES."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import pipeline_env, run_wiretide
from tests.hub.conftest import PCAP, Hub, empty_env, start_hub

LIMIT_MS = 3
RULES = f"""\
rules:
  - name: Users-Latency-SLO
    type: latency
    path: ^/api/users
    service: ""
    latency: {LIMIT_MS}
  - name: json-answers
    type: header
    path: ^/api/
    key: content-type
    value: ^application/json
"""


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(RULES)
    return path


@pytest.fixture(scope="module")
def rules_hub(
    kafka: str, rules_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    env = pipeline_env(kafka, tmp_path_factory.mktemp("rules-hub") / "data")
    env["WIRETIDE_RULES"] = str(rules_file)
    run_wiretide(["tap", "--pcap", str(PCAP), "--quiet", "--rules", str(rules_file)], env)
    running = start_hub(env)
    yield running
    running.stop()


def test_rules_lists_the_loaded_rules(rules_hub: Hub, rules_file: Path) -> None:
    with rules_hub.client() as c:
        answer = c.get("/api/rules")
    assert answer.status_code == 200
    assert answer.json() == {
        "file": str(rules_file),
        "rules": [
            {"name": "Users-Latency-SLO", "type": "latency", "path": "^/api/users",
             "service": "", "method": "", "latency_ms": 3.0, "key": None, "value": None},
            {"name": "json-answers", "type": "header", "path": "^/api/", "service": "",
             "method": "", "latency_ms": None, "key": "content-type",
             "value": "^application/json"},
        ],
    }  # fmt: skip


def test_violations_are_exactly_the_slow_calls(rules_hub: Hub) -> None:
    with rules_hub.client() as c:
        calls = c.get("/api/calls", params={"limit": 1000}).json()["calls"]
        answer = c.get("/api/violations", params={"rule": "Users-Latency-SLO"})
        everything = c.get("/api/violations").json()["violations"]
        newest = c.get("/api/violations", params={"rule": "users-latency-slo", "limit": 1})
    assert answer.status_code == 200
    found = answer.json()["violations"]
    slow = [
        x for x in calls if x["request"]["path"].startswith("/api/users") and x["elapsed_ms"] > 3
    ]
    assert slow and len(slow) < len(calls)
    assert [v["call"]["id"] for v in found] == [x["id"] for x in slow]  # newest first
    assert all(v["rule"] == "users-latency-slo" for v in found)
    assert all(v["verdict"].endswith("ms > 3ms") for v in found)
    assert {(v["rule"], v["call"]["id"]) for v in found} <= {
        (v["rule"], v["call"]["id"]) for v in everything
    }
    assert newest.json()["violations"] == found[:1]
    stamps = [v["call"]["timestamp_ns"] for v in everything]
    assert stamps == sorted(stamps, reverse=True)


def test_violations_of_an_unknown_rule_and_bad_limits(rules_hub: Hub) -> None:
    with rules_hub.client() as c:
        assert c.get("/api/violations", params={"rule": "nope"}).json() == {"violations": []}
        bad = c.get("/api/violations", params={"limit": 0})
    assert bad.status_code == 400 and "limit" in bad.json()["error"]


def test_a_hub_without_rules_and_one_with_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    type: latency\n    latency: soon\n")
    for extra, status, body in [
        ({}, 200, {"file": None, "rules": []}),
        (
            {"WIRETIDE_RULES": str(bad)},
            503,
            {"error": f"rules file {bad}:4:14: rule 'x': latency must be a number of milliseconds"
             " above 0 (e.g. 300, '300ms' or '0.3s'), not 'soon'", "line": None, "column": None},
        ),
    ]:  # fmt: skip
        hub = start_hub(empty_env(tmp_path / str(status), **extra))
        try:
            with hub.client() as c:
                answer = c.get("/api/rules")
                assert c.get("/api/violations").json() == {"violations": []}
        finally:
            hub.stop()
        assert (answer.status_code, answer.json()) == (status, body)
