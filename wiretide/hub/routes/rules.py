"""Validation rules and their verdicts.

    GET /api/rules                      the rules of the hub's rules file (the one the
                                        tap's workers validate calls with)
    GET /api/violations?rule=&limit=N   failed verdicts of stored calls, newest first

Violations come from the stored calls' `verdicts` (one entry per call and failed rule),
so they cover what was captured while the rules were in force.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from sinks.errors import SinkError
from streams.rules import RulesError, load_rules
from wiretide.hub.app import ApiError
from wiretide.hub.models import CallSummary, ErrorBody
from wiretide.hub.store import HubStore

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_FAILED = "arrayExists(v -> v != 'pass', mapValues(verdicts))"
_FAILED_RULE = (
    "mapContains(verdicts, {rules_rule:String}) AND verdicts[{rules_rule:String}] != 'pass'"
)


class RuleView(BaseModel):
    name: str
    type: str = Field(description="latency, json or header")
    path: str = Field(description="regex searched in the URL path; empty: every path")
    service: str = Field(description="regex searched in the destination service or pod name")
    method: str = Field(description="regex searched in the method; empty: every method")
    latency_ms: float | None = Field(None, description="latency rules: the limit")
    key: str | None = Field(None, description="json: a JSONPath; header: a regex on names")
    value: str | None = Field(None, description="json, header: regex the value must match")


class Rules(BaseModel):
    file: str | None = Field(description="the rules file ($WIRETIDE_RULES); null: no rules")
    rules: list[RuleView]


class ViolationView(BaseModel):
    rule: str
    verdict: str = Field(description="fail: <observed> <op> <limit>")
    call: CallSummary


class Violations(BaseModel):
    violations: list[ViolationView] = Field(description="newest first")


def router(store: HubStore) -> APIRouter:
    api = APIRouter(tags=["rules"])

    @api.get(
        "/rules",
        response_model=Rules,
        responses={503: {"model": ErrorBody, "description": "the rules file is unusable"}},
    )
    def list_rules(request: Request) -> dict[str, Any]:
        """The traffic validation rules calls are judged by (read from the file now)."""
        path = request.app.state.settings.rules
        if path is None:
            return {"file": None, "rules": []}
        try:
            rules = load_rules(path)
        except RulesError as ex:
            raise ApiError(503, f"rules file {ex}") from None
        return {"file": path, "rules": [rule.describe() for rule in rules]}

    @api.get(
        "/violations",
        response_model=Violations,
        responses={503: {"model": ErrorBody, "description": "the store failed"}},
    )
    def list_violations(
        rule: Annotated[
            str | None, Query(max_length=1000, description="only this rule's violations")
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="at most this many violations")
        ] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """Stored calls that failed a rule, newest first: one entry per call and rule."""
        rule = rule.lower() if rule else None  # stored names are lower-cased
        where, params = (_FAILED_RULE, {"rules_rule": rule}) if rule else (_FAILED, {})
        try:
            page = store.page(where, params, limit, None)
        except SinkError as ex:
            raise ApiError(503, str(ex)) from None
        out: list[dict[str, Any]] = []
        for call in page.calls:
            for name, verdict in call["verdicts"].items():
                if verdict != "pass" and (rule is None or name == rule):
                    out.append({"rule": name, "verdict": verdict, "call": call})
        return {"violations": out[:limit]}

    return api
