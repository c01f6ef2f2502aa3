"""What a rules file holds and what judging a call gives; frozen, pure data."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import WiretideError
from schemas.regex import Regex
from streams.rules.jsonpath import JsonPath

KINDS = ("latency", "json", "header")  # `slo` is read as latency


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a rules file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class RulesError(WiretideError, ValueError):
    """A rules file that cannot be used; `problems` lists every fault found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. It applies to a call when `path`, `service` and `method` all match (an
    unanchored regex search; an empty one matches anything); `service` is tried on the
    destination's service and on its pod name."""

    name: str
    kind: str  # latency | json | header
    path: Regex | None = None
    service: Regex | None = None
    method: Regex | None = None
    latency_ms: float = 0.0  # latency: the limit
    json_path: JsonPath | None = None  # json: where in the response body
    key: Regex | None = None  # header: which response header names
    value: Regex | None = None  # json, header: what the value must match
    line: int = 0  # where the rule starts in its file

    def describe(self) -> dict[str, object]:
        """The rule as the hub shows it: the regexes' text, not compiled objects."""

        def text(p: Regex | None) -> str:
            return p.pattern if p is not None else ""

        out: dict[str, object] = {
            "name": self.name,
            "type": self.kind,
            "path": text(self.path),
            "service": text(self.service),
            "method": text(self.method),
        }
        if self.kind == "latency":
            out["latency_ms"] = self.latency_ms
        elif self.kind == "json":
            out["key"] = self.json_path.text if self.json_path else ""
            out["value"] = text(self.value)
        else:
            out["key"] = text(self.key)
            out["value"] = text(self.value)
        return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's judgement of one call: pass, or what was seen against what was wanted."""

    rule: str
    kind: str
    passed: bool
    observed: str = ""
    op: str = ""
    limit: str = ""

    @property
    def text(self) -> str:
        """The verdict as text: "pass", or "fail: <observed> <op> <limit>" (e.g.
        "fail: 412.5ms > 300ms")."""
        if self.passed:
            return "pass"
        return "fail: " + " ".join(part for part in (self.observed, self.op, self.limit) if part)
