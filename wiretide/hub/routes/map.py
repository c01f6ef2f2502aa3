"""GET /api/map: the service map of a time window (sinks/clickhouse/service_map.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from sinks.errors import SinkError
from wiretide.hub.models import ErrorBody
from wiretide.hub.store import HubStore
from wiretide.window import DEFAULT_SINCE, window

MAX_FILTER = 10_000  # characters, as /api/calls
_log = logging.getLogger("wiretide.hub")


class MapNode(BaseModel):
    id: str = Field(
        description="`namespace/workload`, or the workload alone (an IP) outside; "
        "grouped by namespace, the namespace alone"
    )
    workload: str = Field(
        description="the pod's owner (Deployment, StatefulSet, ...) name, else the service "
        "name, else the IP; empty for a namespace's node"
    )
    namespace: str = Field(description="empty outside the cluster")
    kind: Literal["pod", "service", "ip", "namespace"] = Field(
        description="pod if any call named one of its pods, else service, else ip; "
        "namespace for a namespace's node (by=namespace)"
    )
    calls: int = Field(ge=0, description="calls it made or answered (a call to itself once)")
    errors: int = Field(ge=0, description="of those, failed (as the edges count them)")


class MapEdge(BaseModel):
    src: str = Field(description="caller's node id")
    dst: str = Field(description="callee's node id")
    protocol: str
    calls: int = Field(ge=0)
    errors: int = Field(
        ge=0,
        description="failed calls: HTTP 5xx, a non-zero result code for other protocols "
        "(DNS: other than NXDOMAIN; WebSocket: an abnormal close), or no answer where "
        "one was expected",
    )
    bytes: int = Field(ge=0, description="request and response body bytes on the wire")
    p50_ms: float | None = Field(
        description="median request-to-response time; null without answers"
    )
    p95_ms: float | None
    p99_ms: float | None
    per_second: float = Field(ge=0, description="calls per second over `seconds`")


class ServiceMap(BaseModel):
    since: str = Field(description="first minute read, RFC 3339 UTC (windows are whole minutes)")
    until: str = Field(description="end of the last minute read")
    exact: bool = Field(
        description="counted from the stored calls (each once); false: from the per-minute "
        "map, which counts a batch a writer replayed after a crash twice"
    )
    seconds: int = Field(
        ge=0,
        description="the span rates are over: from the first minute with calls to the "
        "end of the last, inside the window (0 without calls)",
    )
    nodes: list[MapNode] = Field(description="by namespace, then workload")
    edges: list[MapEdge] = Field(description="most calls first")


_WHEN = "a duration ago (30s, 15m, 2h, 7d, 1w), 'now', or an RFC 3339 time"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad window or filter"},
    503: {"model": ErrorBody, "description": "the store failed"},
}


def router(store: HubStore) -> APIRouter:
    from wiretide.hub.app import ApiError
    from wiretide.kfl import KflError, parse, to_sql

    api = APIRouter()

    @api.get("/map", response_model=ServiceMap, responses=_ERRORS)
    def service_map(
        since: Annotated[
            str, Query(max_length=100, description=f"start: {_WHEN} (default {DEFAULT_SINCE})")
        ] = DEFAULT_SINCE,
        until: Annotated[
            str | None, Query(max_length=100, description=f"end: {_WHEN} (default now)")
        ] = None,
        q: Annotated[
            str,
            Query(
                max_length=MAX_FILTER,
                description="KFL filter: map only the calls it takes (reads every call)",
            ),
        ] = "",
        exact: Annotated[
            bool, Query(description="count from the stored calls, each once (slower)")
        ] = False,
        by: Annotated[
            Literal["workload", "namespace"],
            Query(
                description="a node per workload, or per namespace (addresses outside "
                "the cluster stay nodes of their own)"
            ),
        ] = "workload",
    ) -> dict[str, Any]:
        """Who called whom in the window: workloads as nodes, per-protocol edges with
        calls, errors, bytes and latency quantiles."""
        from sinks.clickhouse.service_map import graph_dict, read_map

        try:
            start, end = window(since, until, datetime.now(UTC))
        except ValueError as ex:
            raise ApiError(400, f"since/until: {ex}") from None
        where = None
        if q.strip():
            try:
                where = to_sql(parse(q))
            except KflError as ex:
                raise ApiError(
                    400, ErrorBody(error=str(ex), line=ex.line, column=ex.column)
                ) from None
            except Exception as ex:  # a KFL bug: logged, but still one line to the user
                _log.error("KFL failed on filter %r", q, exc_info=ex)
                raise ApiError(400, f"this filter could not be read (a KFL bug: {ex!r})") from None
        try:
            with store.reading():  # one query at a time (see HubStore)
                graph = read_map(store.reads, start, end, where, exact=exact, by=by)
        except SinkError as ex:
            raise ApiError(503, str(ex)) from None
        return graph_dict(graph)

    return api
