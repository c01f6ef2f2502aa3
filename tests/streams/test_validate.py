"""Traffic validation rules: reading rules files (faults at their line and column) and
judging calls (latency, json, header; path, service and method scoping)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.records import ApiCall
from streams.rules import (
    RulesError,
    judge,
    load_rules,
    parse_rules,
    summary,
    validate,
    violation,
)
from streams.rules.jsonpath import JsonPath, JsonPathError

REFERENCE_EXAMPLE = """\
rules:
  - name: Catalogue-Latency-SLO   # catalogue's /catalogue must answer within 300 ms
    type: latency                 # latency (aka slo) | json | header
    path: /catalogue              # regex on the URL path; empty matches all
    service: "catalogue.*"        # regex on the destination service/pod name
    latency: 300                  # ms (Mizu later named it response-time)
  - name: body-check
    type: json
    key: "$.name"                 # JSONPath into the response body
    value: "Holy"                 # regex the value must match
  - name: header-check
    type: header
    key: "content-type"           # regex on header names
    value: "application/json.*"   # regex the header value must match
"""

MS = 1_000_000


def call(
    path: str = "/catalogue",
    elapsed_ms: float | None = 10,
    body: bytes = b'{"name": "Holy Grail"}',
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
    dst_service: str = "catalogue",
    dst_pod: str = "catalogue-7d9c4b-x2x9q",
    method: str = "GET",
) -> ApiCall:
    ts = 1_000_000_000
    response = {}
    if elapsed_ms is not None:
        response = dict(
            status=200,
            response_ts_ns=ts + int(elapsed_ms * MS),
            response_headers=headers,
            response_body=body,
        )
    return ApiCall(
        call_id="c1", protocol="http", ts_ns=ts, src_ip="10.0.0.1", src_port=40000,
        dst_ip="10.0.0.2", dst_port=80, flow_id="f", method=method, path=path,
        dst_service=dst_service, dst_pod=dst_pod, **response,
    )  # fmt: skip


def faults(text: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "rules.yaml")
    return [str(p) for p in info.value.problems]


# ------------------------------------------------------------------ reading rules files


def test_the_reference_example_reads_as_three_rules() -> None:
    rules = parse_rules(REFERENCE_EXAMPLE)
    assert [(r.name, r.kind) for r in rules] == [
        ("Catalogue-Latency-SLO", "latency"),
        ("body-check", "json"),
        ("header-check", "header"),
    ]
    assert rules[0].latency_ms == 300
    assert rules[0].describe() == {
        "name": "Catalogue-Latency-SLO", "type": "latency", "path": "/catalogue",
        "service": "catalogue.*", "method": "", "latency_ms": 300.0,
    }  # fmt: skip
    assert rules[1].describe()["key"] == "$.name"


def test_slo_and_response_time_spellings() -> None:
    rules = parse_rules(
        "rules:\n- {name: a, type: slo, response-time: 250}\n"
        "- {name: b, type: latency, latency: '1.5s'}\n- {name: c, type: LATENCY, latency: 20ms}\n"
    )
    assert [(r.kind, r.latency_ms) for r in rules] == [
        ("latency", 250),
        ("latency", 1500),
        ("latency", 20),
    ]


def test_empty_rules_list_is_zero_rules() -> None:
    assert parse_rules("rules: []\n") == ()


A = "rules:\n  - name: a\n"  # a rule named a, starting on line 2; its keys from line 3
LAT = A + "    type: latency\n"  # ... a latency rule; its next key on line 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "1:1: the file is empty"),
        ("- a\n", "1:1: expected a mapping with the key 'rules'"),
        ("rulez: []\n", "1:1: the file: unknown key 'rulez' (did you mean 'rules'?)"),
        ("rules: 3\n", "1:8: 'rules' must be a list"),
        (LAT + "    latency: [1]\n", "4:14: rule 'a': latency must be a single value"),
        (A + "    type: latncy\n", "3:11: rule 'a': unknown type 'latncy'"),
        (
            LAT + "    latncy: 3\n",
            "4:5: rule on line 2: unknown key 'latncy' (did you mean 'latency'?)",
        ),
        (LAT, "2:5: rule 'a': a latency rule needs latency"),
        (LAT + "    latency: -5\n", "4:14: rule 'a': latency must be a number of milliseconds"),
        (LAT + "    latency: fast\n", "4:14: rule 'a': latency must be a number"),
        ("rules:\n  - type: latency\n    latency: 3\n", "2:5: a rule needs a name"),
        (A + "    latency: 3\n", "2:5: rule 'a': no type"),
        (
            LAT + "    latency: 3\n    path: /api/(users\n",
            "5:16: rule 'a': path is not a valid regex: missing ): /api/(users",
        ),
        (A + "    type: header\n    key: 'x['\n", "4:12: rule 'a': key is not a valid regex"),
        (
            A + "    type: json\n    key: $.items[x]\n",
            "4:17: rule 'a': key '$.items[x]' is not a JSONPath we read",
        ),
        (
            A + "    type: json\n    key: name\n",
            "4:10: rule 'a': key 'name' is not a JSONPath we read: a JSONPath starts with $",
        ),
        (A + "    type: json\n    value: x\n", "2:5: rule 'a': a json rule needs key"),
        (A + "    type: header\n    value: x\n", "2:5: rule 'a': a header rule needs key"),
        (LAT + "    latency: 3\n    key: x\n", "5:5: rule 'a': key does not apply to latency"),
        (
            LAT + "    latency: 3\n    response-time: 4\n",
            "5:5: rule 'a': give latency or response-time, not both",
        ),
        (LAT + "    type: json\n", "4:5: rule on line 2: 'type' is given twice"),
        ("rules:\n  - 7\n", "2:5: each rule must be a mapping"),
        (LAT + "   latency: 3\n", "4:4: not valid YAML"),
        ("rules:\n  - name: 'a\n", "3:1: not valid YAML: found unexpected end of stream"),
    ],
)
def test_faults_name_their_line_and_column(text: str, expected: str) -> None:
    found = faults(text)
    assert found[0].startswith(f"rules.yaml:{expected}"), found


def test_every_fault_is_reported_in_file_order() -> None:
    text = (
        "rules:\n"
        "  - name: slow\n    type: latency\n    latency: 0\n"  # 2..4
        "  - name: ok\n    type: header\n    key: content-type\n"  # 5..7
        "  - name: bad-path\n    type: json\n    key: $.a\n    path: '('\n"  # 8..11
        "  - name: slow\n    type: latency\n    latency: 3\n"  # 12..14: duplicate name
    )
    found = faults(text)
    assert [f.split(":")[1] for f in found] == ["4", "11", "12"]
    assert "rule name 'slow' is used twice (first on line 2)" in found[2]
    fixed = text.replace("latency: 0", "latency: 5").replace("'('", "'[(]'")
    assert [f.split(":")[1] for f in faults(fixed)] == ["12"]


def test_one_line_summary_counts_the_other_faults() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules("rules:\n- {name: a}\n- {name: b}\n", "r.yaml")
    assert str(info.value) == "r.yaml:2:3: rule 'a': no type; use type: latency, json or header" \
        " (and 1 more problems)"  # fmt: skip
    assert "\n" not in str(info.value)


def test_load_rules_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(REFERENCE_EXAMPLE)
    assert len(load_rules(path)) == 3
    with pytest.raises(RulesError, match=r"nope.yaml:1:1: cannot read it: No such"):
        load_rules(tmp_path / "nope.yaml")


# ------------------------------------------------------------------ JSONPath subset


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", [{"a": {"b": [1, {"c": "x"}]}, "k y": 2}]),
        ("$.a.b[0]", [1]),
        ("$.a.b[1].c", ["x"]),
        ("$.a.b[*]", [1, {"c": "x"}]),
        ("$.a.*", [[1, {"c": "x"}]]),
        ("$['k y']", [2]),
        ('$["a"]["b"][5]', []),
        ("$.a.b.c", []),
        ("$.a.b[*].c", ["x"]),
    ],
)
def test_jsonpath_subset(path: str, expected: list) -> None:
    doc = {"a": {"b": [1, {"c": "x"}]}, "k y": 2}
    assert JsonPath.parse(path).select(doc) == expected


@pytest.mark.parametrize(("path", "offset"), [("a", 0), ("$.", 2), ("$.a[", 3), ("$.a[-1]", 3)])
def test_jsonpath_faults(path: str, offset: int) -> None:
    with pytest.raises(JsonPathError) as info:
        JsonPath.parse(path)
    assert info.value.offset == offset


# ------------------------------------------------------------------ judging calls

RULES = parse_rules(REFERENCE_EXAMPLE)


def test_a_fast_json_call_passes_every_rule() -> None:
    assert validate(call(), RULES) == (
        ("Catalogue-Latency-SLO", "pass"),
        ("body-check", "pass"),
        ("header-check", "pass"),
    )
    assert summary(validate(call(), RULES)) == "pass"


def test_latency_over_the_limit_fails_with_what_was_seen() -> None:
    verdicts = dict(validate(call(elapsed_ms=412.5), RULES))
    assert verdicts["Catalogue-Latency-SLO"] == "fail: 412.5ms > 300ms"
    assert dict(validate(call(elapsed_ms=300), RULES))["Catalogue-Latency-SLO"] == "pass"
    assert dict(validate(call(elapsed_ms=300.001), RULES))["Catalogue-Latency-SLO"].startswith(
        "fail: 300.001ms > 300ms"
    )
    assert summary(verdicts) == "fail"


def test_no_response_fails_every_rule() -> None:
    verdicts = dict(validate(call(elapsed_ms=None), RULES))
    assert verdicts == {
        "Catalogue-Latency-SLO": "fail: no response within 300ms",
        "body-check": "fail: no response for $.name",
        "header-check": "fail: no response with header /content-type/",
    }


def test_latency_rule_scoped_by_path_and_service() -> None:
    latency = RULES[:1]
    assert validate(call(path="/api/catalogue/7"), latency) != ()  # unanchored, as Mizu
    assert validate(call(path="/orders"), latency) == ()
    assert validate(call(dst_service="", dst_pod="catalogue-0"), latency) != ()  # pod name
    assert validate(call(dst_service="orders", dst_pod="orders-1"), latency) == ()
    assert validate(call(dst_service="", dst_pod=""), latency) == ()  # unknown destination
    anywhere = parse_rules("rules: [{name: any, type: latency, latency: 1}]")
    fast = call(path="", dst_service="", dst_pod="", elapsed_ms=0.5)
    assert validate(fast, anywhere) == (("any", "pass"),)


def test_method_scopes_a_rule() -> None:
    rules = parse_rules("rules: [{name: posts, type: latency, latency: 1, method: ^POST$}]")
    assert validate(call(method="GET", elapsed_ms=5), rules) == ()
    assert validate(call(method="POST", elapsed_ms=5), rules) == (("posts", "fail: 5ms > 1ms"),)


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        (b'{"name": "Holy"}', "pass"),
        (b'{"name": "Unholy"}', 'fail: $.name = "Unholy" !~ /Holy/'),
        (b'{"nam": "Holy"}', "fail: no value at $.name"),
        (b"<html>Holy</html>", "fail: response body not JSON for $.name"),
        (b"", "fail: response body not JSON for $.name"),
        (b'{"name": 7}', 'fail: $.name = "7" !~ /Holy/'),
        (b'["Holy"]', "fail: no value at $.name"),
    ],
)
def test_json_rule(body: bytes, verdict: str) -> None:
    assert dict(validate(call(body=body), RULES))["body-check"] == verdict


def test_json_wildcards_need_every_value_to_match() -> None:
    rules = parse_rules(
        "rules: [{name: ids, type: json, key: '$.items[*].id', value: '^[0-9]+$'},"
        " {name: first, type: json, key: '$.items[0].ok', value: '^true$'},"
        " {name: present, type: json, key: $.meta}]"
    )
    good = json.dumps({"items": [{"id": 1, "ok": True}, {"id": 22}], "meta": None}).encode()
    bad = json.dumps({"items": [{"id": 1, "ok": False}, {"id": "x7"}]}).encode()
    passed = (("ids", "pass"), ("first", "pass"), ("present", "pass"))
    assert validate(call(body=good), rules) == passed
    assert validate(call(body=bad), rules) == (
        ("ids", 'fail: $.items[*].id = "x7" !~ /^[0-9]+$/'),
        ("first", 'fail: $.items[0].ok = "false" !~ /^true$/'),
        ("present", "fail: no value at $.meta"),
    )


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        ((("Content-Type", "application/json; charset=utf-8"),), "pass"),
        ((("CONTENT-TYPE", "text/html"),), 'fail: content-type: "text/html" !~ /application/json'),
        ((("content-length", "3"),), "fail: no header ~ /content-type/"),
        ((), "fail: no header ~ /content-type/"),
    ],
)  # fmt: skip
def test_header_rule(headers: tuple, verdict: str) -> None:
    assert dict(validate(call(headers=headers), RULES))["header-check"].startswith(verdict)


def test_header_rule_checks_every_matching_header() -> None:
    rules = parse_rules("rules: [{name: xs, type: header, key: '^x-', value: '^ok$'}]")
    both = (("X-A", "ok"), ("x-b", "nope"), ("other", "whatever"))
    assert validate(call(headers=both), rules) == (("xs", 'fail: x-b: "nope" !~ /^ok$/'),)
    assert validate(call(headers=both[:1]), rules) == (("xs", "pass"),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (r"'(a)\1'", "5:15: rule 'a': path is not a valid regex: invalid escape sequence: \\1"),
        ("'x(?=y)'", "5:13: rule 'a': path is not a valid regex: invalid perl operator: (?="),
        ("'a**'", "5:14: rule 'a': path is not a valid regex: bad repetition operator: **"),
    ],
)
def test_regexes_re2_cannot_run_are_faults_at_their_place(value: str, expected: str) -> None:
    """Rule regexes run on RE2 (linear time): what only a backtracking engine runs is
    refused when the file is read, at the line and column of the construct."""
    found = faults(LAT + f"    latency: 3\n    path: {value}\n")
    assert found == [f"rules.yaml:{expected}"]


def test_a_catastrophic_regex_judges_a_long_value_in_linear_time() -> None:
    """`(a+)+$` backtracks exponentially on "aaa...!" with Python's `re`; with RE2
    this returns (it would not, in any lifetime, with `re`)."""
    rules = parse_rules("rules: [{name: t, type: header, key: '^x-t$', value: '(a+)+$'}]")
    evil = (("x-t", "a" * 50_000 + "!"),)
    assert validate(call(headers=evil), rules) == (("t", f'fail: x-t: "{"a" * 78}… !~ /(a+)+$/'),)
    assert validate(call(headers=(("x-t", "!" + "a" * 50_000),)), rules) == (("t", "pass"),)
    assert (
        validate(
            call(path="a" * 50_000 + "!"),
            parse_rules("rules: [{name: p, type: latency, latency: 1, path: '(a+)+$'}]"),
        )
        == ()
    )


def test_violation_records_name_both_sides() -> None:
    slow = call(elapsed_ms=500, dst_pod="")
    failed = [v for v in judge(slow, RULES) if not v.passed]
    assert len(failed) == 1
    record = violation(slow, failed[0])
    assert (record.rule, record.kind, record.observed, record.op, record.limit) == (
        "Catalogue-Latency-SLO", "latency", "500ms", ">", "300ms",
    )  # fmt: skip
    assert (record.src_name, record.dst_name, record.call_id, record.path) == (
        "10.0.0.1:40000", "catalogue", "c1", "/catalogue",
    )  # fmt: skip


# ------------------------------------------------------------------ property

names = st.sampled_from(["a", "b", "c", "d", "e"])
regex_text = st.sampled_from(["", "^/api", "users", "catalogue.*", "^$", "x|y", "[0-9]"])
rule_docs = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["latency", "json", "header"]),
        "path": regex_text,
        "service": regex_text,
        "latency": st.integers(1, 50),
        "key": st.sampled_from(["$.name", "$.items[*]", "$", "content-type", "^x-"]),
        "value": st.sampled_from(["", "Holy", "^[0-9]+$", "json", "."]),
    }
)
calls = st.builds(
    call,
    path=st.sampled_from(["/api/users", "/catalogue", "", "/x/9"]),
    elapsed_ms=st.one_of(st.none(), st.integers(0, 60)),
    body=st.sampled_from([b'{"name": "Holy"}', b'{"items": [1, "2"]}', b"[]", b"nope", b""]),
    headers=st.sampled_from([(), (("Content-Type", "application/json"),), (("x-a", "7"),)]),
    dst_service=st.sampled_from(["", "catalogue", "users"]),
    dst_pod=st.sampled_from(["", "catalogue-0", "x-1"]),
)


def _rules_yaml(docs: list[dict]) -> str:
    out = []
    for i, d in enumerate(docs):
        rule = {"name": f"r{i}", "type": d["type"], "path": d["path"], "service": d["service"]}
        if d["type"] == "latency":
            rule["latency"] = d["latency"]
        else:
            key = d["key"] if (d["type"] == "json") == d["key"].startswith("$") else (
                "$.name" if d["type"] == "json" else "content-type"
            )  # fmt: skip
            rule["key"] = key
            rule["value"] = d["value"]
        out.append(rule)
    return json.dumps({"rules": out})  # JSON is YAML


@given(st.lists(rule_docs, max_size=5), calls)
def test_a_call_passes_iff_every_applicable_rule_passes(docs: list[dict], c: ApiCall) -> None:
    rules = parse_rules(_rules_yaml(docs))
    verdicts = validate(c, rules)
    applicable = [
        r for r in rules
        if re.search(r.path.pattern if r.path else "", c.path)
        and (not r.service or r.service.search(c.dst_service) or r.service.search(c.dst_pod))
    ]  # fmt: skip
    assert [name for name, _ in verdicts] == [r.name for r in applicable]
    each = [validate(c, [r]) for r in applicable]
    assert all(len(v) == 1 for v in each)
    passes_alone = [v[0][1] == "pass" for v in each]
    assert (summary(verdicts) == "pass") == (bool(applicable) and all(passes_alone))
    assert (summary(verdicts) == "fail") == (not all(passes_alone))
    assert (summary(verdicts) is None) == (not applicable)


# ------------------------------------------------------------------ the pipeline stage


def test_pipeline_judges_calls_after_enrich_and_returns_violations() -> None:
    from producers.pcap import read_segments
    from schemas.records import Endpoint
    from streams.dissect.registry import default_registry
    from streams.enrich import Directory
    from streams.pipeline import Pipeline
    from streams.redact import RedactionPolicy
    from tests.conftest import GOLDEN

    directory = Directory()
    segments = list(read_segments(GOLDEN / "e2e" / "http_basic.pcap"))
    server = segments[0].dst_ip
    directory.update(Endpoint(ip=server, kind="pod", name="catalogue-0", namespace="shop"))
    rules = parse_rules(
        "rules:\n- {name: Slow, type: latency, latency: 2, service: '^catalogue'}\n"
        "- {name: elsewhere, type: latency, latency: 2, service: '^orders'}\n"
    )
    pipeline = Pipeline(
        default_registry(), RedactionPolicy.default(), directory=directory, rules=rules
    )
    out = pipeline.process(0, segments)
    end = pipeline.finish()
    calls, found = out.calls + end.calls, out.violations + end.violations
    assert len(calls) == 17 and all(c.dst_pod == "catalogue-0" for c in calls)
    slow = {c.call_id for c in calls if c.elapsed_ns > 2 * MS}
    assert 0 < len(slow) < len(calls)
    assert {c.call_id for c in calls if summary(c.verdicts) == "fail"} == slow
    assert all([name for name, _ in c.verdicts] == ["Slow"] for c in calls)
    assert sorted(v.call_id for v in found) == sorted(slow)
    assert {(v.rule, v.dst_name, v.dst_namespace) for v in found} == {
        ("Slow", "catalogue-0", "shop")
    }
    plain = Pipeline(default_registry(), RedactionPolicy.default())
    assert all(c.verdicts == () for c in plain.process(0, segments).calls)
