"""The Grafana dashboard (deploy/grafana/wiretide.json) asks only for series Wiretide
exposes: every wiretide_* name in its queries is one the hub or a pipeline process
serves, with the suffix its type gives it."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import schemas.runtime.metrics  # noqa: F401  (registers the pipeline's metrics)
from schemas.coverage import CoverageReport, NodeCoverage
from sinks.clickhouse.ddl import LATENCY_BUCKETS_S, RED_KEYS
from sinks.clickhouse.red import RedRow
from tests.conftest import ROOT
from wiretide.hub.metrics import coverage_families, red_families

DASHBOARD = ROOT / "deploy" / "grafana" / "wiretide.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _served() -> set[str]:
    """Every series name the hub's RED families and this process's registry give."""
    row = RedRow(tuple("x" for _ in RED_KEYS), 1, 0, 1, 1, 1, 0.1, (1,) * len(LATENCY_BUCKETS_S))
    names = {"wiretide_hub_store_up", "wiretide_consumer_lag_messages"}
    node = NodeCoverage("n", 1, sources=("afpacket",))
    families = [*red_families([row]), *coverage_families(CoverageReport.build([node]))]
    families += text_string_to_metric_families(generate_latest(REGISTRY).decode())
    for family in families:
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_metric_the_dashboard_queries_is_served():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard)
    asked = {n for e in exprs for n in re.findall(r"\bwiretide_[a-z0-9_]+", e)}
    for variable in dashboard["templating"]["list"]:
        asked.update(re.findall(r"\bwiretide_[a-z0-9_]+", variable.get("definition", "")))
    served = _served()
    assert asked and asked <= served, sorted(asked - served)
    # RED per service, pipeline health and coverage each have their row
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert [r.split()[0] for r in rows] == ["RED", "Pipeline", "Coverage:"]


def test_panels_have_unique_ids_and_use_the_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"]
