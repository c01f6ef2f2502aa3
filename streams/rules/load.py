"""Rules files (YAML, Mizu's `--traffic-validation-file` format) → `Rule`s.

    rules:
      - name: Catalogue-Latency-SLO
        type: latency            # latency (or slo) | json | header
        path: /catalogue         # regex searched in the URL path; empty matches all
        service: "catalogue.*"   # regex searched in the destination service or pod name
        latency: 300             # ms (also `response-time`; "300ms" and "0.3s" work too)
      - {name: body-check, type: json, key: "$.name", value: "Holy"}
      - {name: header-check, type: header, key: "content-type", value: "application/json.*"}

The file is read as a YAML node tree so every fault is reported at its line and column;
all faults are collected, not just the first.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml

from schemas.regex import Regex, RegexError, compile_re2
from streams.rules.jsonpath import JsonPath, JsonPathError
from streams.rules.model import Problem, Rule, RulesError

_KINDS = {"latency": "latency", "slo": "latency", "json": "json", "header": "header"}
_KEYS = ("name", "type", "path", "service", "method", "latency", "response-time", "key", "value")
_FOR_KIND = {
    "latency": {"latency", "response-time"},
    "json": {"key", "value"},
    "header": {"key", "value"},
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")
_EXAMPLE = "e.g.\n  rules:\n    - name: slow-api\n      type: latency\n      latency: 300"


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """The rules in a file; a `RulesError` (every problem, with file:line:column) if any."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as ex:
        reason = ex.strerror if isinstance(ex, OSError) and ex.strerror else str(ex)
        raise RulesError([Problem(str(path), 1, 1, f"cannot read it: {reason}")]) from None
    return parse_rules(text, str(path))


def parse_rules(text: str, file: str = "<rules>") -> tuple[Rule, ...]:
    reader = _Reader(file)
    rules = reader.read(text)
    if reader.problems:
        raise RulesError(reader.problems)
    return rules


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def fault(self, node: yaml.Node | None, message: str, offset: int = 0) -> None:
        line, column = _position(node, offset) if node is not None else (1, 1)
        self.problems.append(Problem(self.file, line, column, message))

    def read(self, text: str) -> tuple[Rule, ...]:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as ex:
            mark = getattr(ex, "problem_mark", None)
            what = " ".join(
                filter(None, [getattr(ex, "problem", None), getattr(ex, "context", None)])
            )
            line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            self.problems.append(Problem(self.file, line, column, f"not valid YAML: {what or ex}"))
            return ()
        if root is None:
            self.fault(
                None, f"the file is empty: expected 'rules:' and a list of rules, {_EXAMPLE}"
            )
            return ()
        if not isinstance(root, yaml.MappingNode):
            self.fault(root, "expected a mapping with the key 'rules' (a list of rules)")
            return ()
        found = self.mapping(root, ("rules",), "the file")
        if "rules" not in found:
            self.fault(root, f"no 'rules' key: list the rules under it, {_EXAMPLE}")
            return ()
        items = found["rules"][1]
        if not isinstance(items, yaml.SequenceNode):
            self.fault(items, "'rules' must be a list of rules (each item starting with '- ')")
            return ()
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for item in items.value:
            name, rule = self.rule(item)
            folded = name.lower()  # stored verdicts are keyed by the lower-cased name
            if folded in seen:
                self.fault(
                    item,
                    f"rule name {name!r} is used twice (first on line {seen[folded]}):"
                    " names key the verdicts, so each must be unique (ignoring case)",
                )
                continue
            if name:
                seen[folded] = item.start_mark.line + 1
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def mapping(
        self, node: yaml.MappingNode, allowed: tuple[str, ...], what: str
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key text -> (key node, value node); unknown and repeated keys are faults."""
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.fault(key, f"{what}: a key must be a plain word")
                continue
            name = key.value
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fault(
                    key, f"{what}: unknown key {name!r}{hint}; known keys: {', '.join(allowed)}"
                )
            elif name in out:
                self.fault(key, f"{what}: {name!r} is given twice")
            else:
                out[name] = (key, value)
        return out

    def scalar(self, fields: dict, name: str, what: str) -> tuple[yaml.Node, str] | None:
        """(node, text) of a scalar value; None if absent or not a scalar (a fault)."""
        if name not in fields:
            return None
        _, node = fields[name]
        if not isinstance(node, yaml.ScalarNode):
            self.fault(node, f"{what}: {name} must be a single value, not a list or mapping")
            return None
        null = node.tag == "tag:yaml.org,2002:null"
        return node, "" if null else node.value

    def regex(
        self, fields: dict, name: str, what: str, *, ignore_case: bool = False
    ) -> Regex | None:
        got = self.scalar(fields, name, what)
        if got is None or not got[1]:
            return None
        node, text = got
        try:  # RE2: matching time is linear in the text, whatever the pattern
            return compile_re2(text, dot_matches_newline=False, ignore_case=ignore_case)
        except RegexError as ex:
            reason = str(ex).removeprefix("bad regex: ")
            self.fault(node, f"{what}: {name} is not a valid regex: {reason}", ex.offset)
            return None

    def rule(self, node: yaml.Node) -> tuple[str, Rule | None]:
        """(its name or "", the rule or None when it has faults)"""
        if not isinstance(node, yaml.MappingNode):
            self.fault(node, "each rule must be a mapping with name, type and its settings")
            return "", None
        line = node.start_mark.line + 1
        before = len(self.problems)
        fields = self.mapping(node, _KEYS, f"rule on line {line}")
        got = self.scalar(fields, "name", f"rule on line {line}")
        given = name = got[1].strip() if got else ""
        if not name:
            self.fault(got[0] if got else node, "a rule needs a name (name: ...)")
            name = f"rule on line {line}"
        what = f"rule {name!r}"
        got = self.scalar(fields, "type", what)
        kind = _KINDS.get(got[1].strip().lower()) if got else None
        if got is None:
            self.fault(node, f"{what}: no type; use type: latency, json or header")
        elif kind is None:
            self.fault(
                got[0], f"{what}: unknown type {got[1]!r}; use latency (or slo), json or header"
            )
        if kind is not None:
            for extra in sorted(set(fields) & {"latency", "response-time", "key", "value"}):
                if extra not in _FOR_KIND[kind]:
                    self.fault(fields[extra][0], f"{what}: {extra} does not apply to {kind} rules")
        path = self.regex(fields, "path", what)
        service = self.regex(fields, "service", what)
        method = self.regex(fields, "method", what)
        rule = Rule(name, kind or "", path, service, method, line=line)
        if kind == "latency":
            rule = self.latency(rule, fields, node, what)
        elif kind == "json":
            rule = self.json(rule, fields, node, what)
        elif kind == "header":
            key = self.regex(fields, "key", what, ignore_case=True)
            if key is None and "key" not in fields:
                self.fault(node, f"{what}: a header rule needs key (a regex on header names)")
            rule = _replace(rule, key=key, value=self.regex(fields, "value", what))
        return given, rule if len(self.problems) == before else None

    def latency(self, rule: Rule, fields: dict, node: yaml.Node, what: str) -> Rule:
        given = [k for k in ("latency", "response-time") if k in fields]
        if not given:
            self.fault(node, f"{what}: a latency rule needs latency (milliseconds, e.g. 300)")
            return rule
        if len(given) == 2:
            self.fault(
                fields["response-time"][0], f"{what}: give latency or response-time, not both"
            )
            return rule
        got = self.scalar(fields, given[0], what)
        if got is None:
            return rule
        m = _DURATION.match(got[1])
        ms = float(m.group(1)) * (1000.0 if m.group(2) == "s" else 1.0) if m else 0.0
        if ms <= 0:
            self.fault(
                got[0],
                f"{what}: {given[0]} must be a number of milliseconds above 0"
                f" (e.g. 300, '300ms' or '0.3s'), not {got[1]!r}",
            )
            return rule
        return _replace(rule, latency_ms=ms)

    def json(self, rule: Rule, fields: dict, node: yaml.Node, what: str) -> Rule:
        got = self.scalar(fields, "key", what)
        if got is None or not got[1]:
            self.fault(got[0] if got else node, f"{what}: a json rule needs key (e.g. $.name)")
            return rule
        try:
            path = JsonPath.parse(got[1])
        except JsonPathError as ex:
            self.fault(got[0], f"{what}: key {got[1]!r} is not a JSONPath we read: {ex}", ex.offset)
            return rule
        return _replace(rule, json_path=path, value=self.regex(fields, "value", what))


def _replace(rule: Rule, **changes: object) -> Rule:
    from dataclasses import replace

    return replace(rule, **changes)


def _position(node: yaml.Node, offset: int) -> tuple[int, int]:
    """1-based (line, column) of character `offset` of a scalar's value: exact for plain
    and simply quoted one-line scalars, the scalar's start otherwise."""
    start, end = node.start_mark, node.end_mark
    line, column = start.line + 1, start.column + 1
    if not offset or not isinstance(node, yaml.ScalarNode) or start.line != end.line:
        return line, column
    source = start.buffer[start.pointer : end.pointer] if start.buffer is not None else None
    if node.style is None and source == node.value:
        return line, column + offset
    if node.style in ("'", '"') and source == f"{node.style}{node.value}{node.style}":
        return line, column + 1 + offset
    return line, column
