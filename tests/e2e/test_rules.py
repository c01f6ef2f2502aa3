"""Traffic validation rules end to end: `wiretide tap --rules` over a real capture on a
real broker; the stored calls carry their verdicts, exactly the calls slower than a
latency rule's limit are flagged, and the violations topic gets one record per failure."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.records import Violation
from schemas.serde import decode_violation
from tests.conftest import GOLDEN, ROOT, run_wiretide

PCAP = GOLDEN / "e2e" / "http_basic.pcap"
LIMIT_MS = 3  # /api/users in this capture answers in 0.6 to 4.8 ms
# REFERENCE.md's latency example, aimed at this capture: it has no Kubernetes names, so
# no service regex; paths are /api/users, /missing, /login, /chunked, ...
RULES = f"""\
rules:
  - name: Users-Latency-SLO     # /api/users must answer within {LIMIT_MS} ms
    type: latency
    path: ^/api/users
    latency: {LIMIT_MS}
  - name: Any-Latency           # everything within 1 ms (Mizu's spelling of the limit)
    type: slo
    response-time: 1
  - name: json-answers
    type: header
    path: ^/api/
    key: content-type
    value: ^application/json
"""


SLO = "users-latency-slo"  # stored and shown by the lower-cased rule name


def read_violations(bootstrap: str, topic: str) -> list[tuple[bytes, Violation]]:
    """Every record on the topic, up to the high watermarks taken first."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in partitions}  # fmt: skip
        wanted = {p: end for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        got: list[tuple[bytes, Violation]] = []
        while wanted:
            msg = consumer.poll(30)
            assert msg is not None, f"the violations topic stopped short of {wanted}"
            assert not msg.error(), msg.error()
            got.append((msg.key(), decode_violation(msg.value())))
            if msg.offset() + 1 >= wanted.get(msg.partition(), 0):
                wanted.pop(msg.partition(), None)
        return got
    finally:
        consumer.close()


def stored(env: dict[str, str], kfl: str = "") -> list[dict]:
    out = run_wiretide(["query", "--json", kfl], env).stdout
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def tapped(wt_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    out = run_wiretide(["tap", "--pcap", str(PCAP), "--rules", str(rules), "--quiet"], wt_env)
    assert "stored 17 calls" in out.stdout
    return wt_env


def test_exactly_the_slow_calls_are_flagged(tapped: dict[str, str]) -> None:
    calls = stored(tapped)
    assert len(calls) == 17
    users = [c for c in calls if c["request"]["path"].startswith("/api/users")]
    slow = {c["id"] for c in users if c["elapsed_ms"] > LIMIT_MS}
    assert 0 < len(slow) < len(users)  # the limit splits the capture's calls
    flagged = {c["id"] for c in calls if c["verdicts"].get(SLO, "pass") != "pass"}
    assert flagged == slow
    for c in calls:
        verdict = c["verdicts"].get(SLO)
        if c not in users:
            assert verdict is None  # the rule does not apply to other paths
        elif c["id"] in slow:
            assert verdict == f"fail: {c['elapsed_ms']:.3f}".rstrip("0").rstrip(".") + "ms > 3ms"
        else:
            assert verdict == "pass"
    # The rule without a path judges every call.
    over_1ms = {c["id"] for c in calls if c["elapsed_ms"] > 1}
    assert {c["id"] for c in calls if c["verdicts"]["any-latency"] != "pass"} == over_1ms
    # The summary and the KFL fields agree with the verdicts.
    failing = {c["id"] for c in calls if any(v != "pass" for v in c["verdicts"].values())}
    assert {c["id"] for c in calls if c["verdict"] == "fail"} == failing
    assert {c["id"] for c in stored(tapped, 'verdict == "fail"')} == failing
    for spelling in ("Users-Latency-SLO", SLO):  # KFL folds map keys
        kfl = f'verdicts["{spelling}"].startsWith("fail")'
        assert {c["id"] for c in stored(tapped, kfl)} == slow


def test_header_rule_over_the_capture(tapped: dict[str, str]) -> None:
    for c in stored(tapped):
        verdict = c["verdicts"].get("json-answers")
        if not c["request"]["path"].startswith("/api/"):
            assert verdict is None
            continue
        content_type = (c["response"]["headers"] or {}).get("content-type", "")
        if content_type.startswith("application/json"):
            assert verdict == "pass"
        else:
            assert verdict is not None and verdict.startswith("fail: "), (c["id"], verdict)


def test_one_violation_record_per_failed_verdict(tapped: dict[str, str]) -> None:
    calls = {c["id"]: c for c in stored(tapped)}
    failed = sorted(
        (rule, call["id"], verdict)
        for call in calls.values()
        for rule, verdict in call["verdicts"].items()
        if verdict != "pass"
    )
    assert failed
    topic = f"{tapped['WIRETIDE_PREFIX']}wiretide.violations"
    records = read_violations(tapped["WIRETIDE_KAFKA"], topic)
    assert all(key == v.rule.encode() for key, v in records)  # keyed by rule name
    got = sorted(
        (v.rule.lower(), v.call_id, f"fail: {v.observed} {v.op} {v.limit}") for _, v in records
    )
    assert got == failed
    for _, v in records:
        call = calls[v.call_id]
        assert v.ts_ns == call["timestamp_ns"] and v.path == call["request"]["path"]
        assert v.dst_name == f"{call['dst']['ip']}:{call['dst']['port']}"  # no pod names here


def test_a_bad_rules_file_stops_the_tap_before_it_starts(
    wt_env: dict[str, str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("latency: 3", "latency: fast"))
    out = run_wiretide(["tap", "--pcap", str(PCAP), "--rules", str(rules)], wt_env, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"wiretide: error: rules file {rules}:5:14: rule 'Users-Latency-SLO': latency must be"
        " a number of milliseconds above 0 (e.g. 300, '300ms' or '0.3s'), not 'fast'"
    )
    assert not Path(wt_env["WIRETIDE_DATA"]).exists()  # nothing started


def rules_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wiretide", "rules", "check", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rules_check(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    out = rules_check(rules)
    assert out.returncode == 0 and out.stdout.splitlines()[0] == "ok: 3 rules"
    rules.write_text(RULES.replace("type: slo", "type: slow").replace("key: content-type", "ky: x"))
    out = rules_check(rules)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"wiretide: error: {rules}:7:11: rule 'Any-Latency': unknown type 'slow';"
        " use latency (or slo), json or header",
        f"wiretide: error: {rules}:12:5: rule on line 9: unknown key 'ky' (did you mean"
        " 'key'?); known keys: name, type, path, service, method, latency, response-time,"
        " key, value",
        f"wiretide: error: {rules}:9:5: rule 'json-answers': a header rule needs key (a regex"
        " on header names)",
    ]
