"""Judge one call against the rules: pure functions over `ApiCall`.

A rule applies when its `path` regex is found in the call's path, its `service` regex in
the destination's service or pod name, and its `method` regex in the method (an empty
regex matches anything, an unknown name is ""). Mizu's semantics: unanchored searches,
and json/header rules look at the response.

* latency: the time from the request's first byte to the response's first byte must not
  exceed the limit; a call that got no response fails.
* json: the response body must be JSON, the path must reach at least one value, and
  every value it reaches must match `value` (strings as they are, anything else as
  compact JSON text).
* header: at least one response header's name must match `key`, and every such
  header's value must match `value`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from schemas.records import ApiCall, Violation
from schemas.regex import Regex
from streams.rules.model import Rule, Verdict

_SHOWN = 80  # characters of an observed value kept in a verdict


def applies(rule: Rule, call: ApiCall) -> bool:
    if rule.path is not None and rule.path.search(call.path) is None:
        return False
    if rule.method is not None and rule.method.search(call.method) is None:
        return False
    if rule.service is not None:
        s = rule.service
        return s.search(call.dst_service) is not None or s.search(call.dst_pod) is not None
    return True


def judge(call: ApiCall, rules: Sequence[Rule]) -> tuple[Verdict, ...]:
    """The verdict of every rule that applies to the call, in the rules' order."""
    return tuple(_CHECKS[r.kind](r, call) for r in rules if applies(r, call))


def validate(call: ApiCall, rules: Sequence[Rule]) -> tuple[tuple[str, str], ...]:
    """(rule name, "pass" or "fail: ...") for every rule that applies: `ApiCall.verdicts`."""
    return tuple((v.rule, v.text) for v in judge(call, rules))


def summary(verdicts: Sequence[tuple[str, str]] | dict[str, str]) -> str | None:
    """Sum verdicts up: "fail" if any failed, "pass" if all passed, None for none."""
    texts = verdicts.values() if isinstance(verdicts, dict) else (t for _, t in verdicts)
    seen = False
    for text in texts:
        if text != "pass":
            return "fail"
        seen = True
    return "pass" if seen else None


def violation(call: ApiCall, verdict: Verdict) -> Violation:
    """The record published for a failed verdict."""
    return Violation(
        rule=verdict.rule,
        kind=verdict.kind,
        call_id=call.call_id,
        ts_ns=call.ts_ns,
        observed=verdict.observed,
        op=verdict.op,
        limit=verdict.limit,
        protocol=call.protocol,
        method=call.method,
        path=call.path,
        src_name=call.src_pod or call.src_service or _endpoint(call.src_ip, call.src_port),
        src_namespace=call.src_namespace,
        dst_name=call.dst_pod or call.dst_service or _endpoint(call.dst_ip, call.dst_port),
        dst_namespace=call.dst_namespace,
    )


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _ms(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + "ms"


def _latency(rule: Rule, call: ApiCall) -> Verdict:
    limit = _ms(rule.latency_ms)
    if not call.response_ts_ns:
        return Verdict(rule.name, rule.kind, False, "no response", "within", limit)
    elapsed_ns = call.response_ts_ns - call.ts_ns
    if elapsed_ns > rule.latency_ms * 1e6:
        return Verdict(rule.name, rule.kind, False, _ms(elapsed_ns / 1e6), ">", limit)
    return Verdict(rule.name, rule.kind, True)


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _pattern(p: Regex | None) -> str:
    return f"/{p.pattern}/" if p is not None else "//"


def _json(rule: Rule, call: ApiCall) -> Verdict:
    assert rule.json_path is not None
    fail = (rule.name, rule.kind, False)
    if not call.response_ts_ns:
        return Verdict(*fail, "no response", "for", rule.json_path.text)
    try:
        document = json.loads(call.response_body)
    except ValueError:  # includes bodies that are not UTF-8
        return Verdict(*fail, "response body not JSON", "for", rule.json_path.text)
    values = rule.json_path.select(document)
    if not values:
        return Verdict(*fail, "no value", "at", rule.json_path.text)
    if rule.value is not None:
        for value in values:
            text = _as_text(value)
            if rule.value.search(text) is None:
                shown = _shown(json.dumps(text, ensure_ascii=False))
                return Verdict(
                    *fail, f"{rule.json_path.text} = {shown}", "!~", _pattern(rule.value)
                )
    return Verdict(rule.name, rule.kind, True)


def _header(rule: Rule, call: ApiCall) -> Verdict:
    assert rule.key is not None
    fail = (rule.name, rule.kind, False)
    if not call.response_ts_ns:
        return Verdict(*fail, "no response", "with header", _pattern(rule.key))
    matched = [(n, v) for n, v in call.response_headers if rule.key.search(n) is not None]
    if not matched:
        return Verdict(*fail, "no header", "~", _pattern(rule.key))
    if rule.value is not None:
        for name, value in matched:
            if rule.value.search(value) is None:
                shown = _shown(json.dumps(value, ensure_ascii=False))
                return Verdict(*fail, f"{name.lower()}: {shown}", "!~", _pattern(rule.value))
    return Verdict(rule.name, rule.kind, True)


_CHECKS = {"latency": _latency, "json": _json, "header": _header}
