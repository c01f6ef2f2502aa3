"""Replay runs (issue 16): what `wiretide replay report` shows, as JSON.

    GET /api/replay/runs?limit=N         the runs stored, newest first, with their counts
    GET /api/replay/runs/{run}?limit=N   a run's report: counts, latency p50/p95/p99
                                         recorded vs replayed, changed and failed calls
                                         with their differences and both answers

Before answering, the hub stores the results a run could only put on Kafka (it ran while
this process held the store): see wiretide/replay/ingest.py.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from schemas.replay import ReplayResult
from sinks.clickhouse.replay_results import ensure_table, insert_results, read_runs
from wiretide.hub.app import ApiError
from wiretide.hub.models import ErrorBody
from wiretide.hub.store import HubStore
from wiretide.replay.ingest import TopicCatchUp
from wiretide.replay.report import DEFAULT_LIMIT, load_report, run_view
from wiretide.replay.results import with_kafka

_log = logging.getLogger("wiretide.hub")


def router(store: HubStore) -> APIRouter:
    api = APIRouter(tags=["replay"])
    state: dict[str, TopicCatchUp | None] = {}

    def store_results(results: list[ReplayResult]) -> None:
        with store.lock:  # the writer's turn, as the sink takes it
            ensure_table(store.store)
            insert_results(store.store, results)

    def catch_up(request: Request) -> None:
        if "topic" not in state:
            settings = with_kafka(request.app.state.settings)
            state["topic"] = TopicCatchUp(settings, store_results) if settings else None
        topic = state["topic"]
        if topic is not None:
            topic.catch_up()

    @api.get("/replay/runs")
    def list_replay_runs(
        request: Request, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> list[dict[str, Any]]:
        """The replay runs stored, newest first: run id, first and last send time (Unix
        ns), and how many calls matched, changed and failed."""
        catch_up(request)
        with store.reading():
            return [run_view(r) for r in read_runs(store.reads, limit)]

    @api.get(
        "/replay/runs/{run_id}",
        responses={404: {"model": ErrorBody, "description": "no such run"}},
    )
    def get_replay_run(
        request: Request,
        run_id: Annotated[str, Path(max_length=200)],
        limit: Annotated[int, Query(ge=1, le=100_000)] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """A run's report (what `wiretide replay report RUN --json` prints)."""
        catch_up(request)
        with store.reading():
            report = load_report(store.reads, run_id, limit)
        if report is None:
            raise ApiError(404, f"no replay run {run_id!r}")
        return report

    return api
