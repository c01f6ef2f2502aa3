"""Replay runs (issue 16): what `wiretide replay report` shows, as JSON.

    GET /api/replay/runs?limit=N         the runs stored, newest first, with their counts
    GET /api/replay/runs/{run}?limit=N   a run's report: counts, latency p50/p95/p99
                                         recorded vs replayed, changed and failed calls
                                         with their differences and both answers
    POST /api/replay/runs {"call_id", "target"}   send one stored call again at a URL
                                         (read-only methods, nothing redacted: see
                                         wiretide/replay/one_call.py); the run's report

Before answering, the hub stores the results a run could only put on Kafka (it ran while
this process held the store): see wiretide/replay/ingest.py.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from schemas.replay import ReplayResult
from sinks.clickhouse.replay_results import ensure_table, insert_results, read_runs
from sinks.errors import SinkError
from wiretide.hub.app import ApiError
from wiretide.hub.models import ErrorBody
from wiretide.hub.store import HubStore
from wiretide.replay.ingest import TopicCatchUp
from wiretide.replay.report import DEFAULT_LIMIT, load_report, run_view
from wiretide.replay.results import with_kafka

_log = logging.getLogger("wiretide.hub")


class ReplayOne(BaseModel):
    call_id: str = Field(max_length=200, description="a stored call's id")
    target: str = Field(max_length=2000, description="where to send it: http(s)://HOST:PORT")


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

    _add_run_route(api, store, store_results)
    return api


def _add_run_route(api: APIRouter, store: HubStore, store_results: Any) -> None:
    @api.post(
        "/replay/runs",
        status_code=201,
        responses={
            400: {"model": ErrorBody, "description": "not a URL, or the call is not sent"},
            404: {"model": ErrorBody, "description": "no such call"},
            415: {"model": ErrorBody, "description": "the body is not JSON"},
        },
    )
    def start_replay_run(request: Request, body: ReplayOne) -> dict[str, Any]:
        """Send one stored call again at `target`, as `wiretide replay` does by default
        (read-only methods, nothing the capture redacted), once; store the result and
        answer the run's report."""
        # JSON only: a cross-site form cannot send it without the browser asking first.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "send the run as JSON (Content-Type: application/json)")
        from wiretide.replay.one_call import replay_one
        from wiretide.replay.run import new_run_id
        from wiretide.replay.targets import ReplayError

        try:
            view = store.get(body.call_id)
        except SinkError as ex:
            raise ApiError(503, str(ex)) from None
        if view is None:
            raise ApiError(404, f"no call with id {body.call_id!r}")
        run_id = new_run_id()
        try:
            results = replay_one(view, body.target, run_id)
        except ReplayError as ex:
            raise ApiError(400, str(ex)) from None
        store_results(results)
        with store.reading():
            report = load_report(store.reads, run_id, DEFAULT_LIMIT)
        if report is None:
            raise ApiError(503, f"run {run_id} was sent but its result is not stored")
        return report
