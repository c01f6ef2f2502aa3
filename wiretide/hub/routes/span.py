"""GET /api/span?q=KFL: when the stored calls a filter takes begin and end.

The UI asks when a time range shows nothing: if older (or newer) calls are stored, it
says so and offers their span instead of an empty page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from sinks.clickhouse.ddl import CALLS
from sinks.clickhouse.view import rfc3339
from sinks.errors import SinkError, one_line
from wiretide.hub.models import ErrorBody
from wiretide.hub.store import HubStore

MAX_FILTER = 10_000  # characters, as /api/calls
# min/max need no FINAL: a call stored twice (a replayed writer batch) has one time.
_SPAN_SQL = (
    f"SELECT toUnixTimestamp64Nano(min(ts)), toUnixTimestamp64Nano(max(ts)), count() FROM {CALLS}"
)


class Span(BaseModel):
    first: str | None = Field(
        description="capture time of the oldest matching call, RFC 3339 UTC; null: none"
    )
    last: str | None = Field(description="capture time of the newest matching call; null: none")
    first_ns: int | None = Field(description="`first` in Unix epoch nanoseconds")
    last_ns: int | None


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad filter"},
    503: {"model": ErrorBody, "description": "the store failed"},
}


def span_of(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The answer from the query's one row (min ns, max ns, rows)."""
    first, last, stored = rows[0] if rows else (0, 0, 0)
    if not stored:
        return {"first": None, "last": None, "first_ns": None, "last_ns": None}
    first, last = int(first), int(last)
    return {"first": rfc3339(first), "last": rfc3339(last), "first_ns": first, "last_ns": last}


def router(store: HubStore) -> APIRouter:
    from wiretide.hub.app import ApiError, _filter_error
    from wiretide.kfl import parse, to_sql

    api = APIRouter()

    @api.get("/span", response_model=Span, responses=_ERRORS)
    def stored_span(
        q: Annotated[
            str, Query(max_length=MAX_FILTER, description="KFL filter (its limit(n) is ignored)")
        ] = "",
    ) -> dict[str, Any]:
        """The first and last capture time of the stored calls the filter takes."""
        try:
            where, params = to_sql(parse(q))
        except Exception as ex:
            raise ApiError(400, _filter_error(q, ex)) from None
        sql = _SPAN_SQL + (f" WHERE ({where})" if where.strip() else "")
        try:
            with store.reading():
                rows = _query(store, sql, params)
        except SinkError as ex:
            raise ApiError(503, str(ex)) from None
        return span_of(rows)

    return api


def _query(store: HubStore, sql: str, params: dict[str, object]) -> list[tuple[Any, ...]]:
    try:
        return store.reads.client.query(sql, parameters=params).result_rows
    except Exception as ex:
        if "TIMEOUT_EXCEEDED" in str(ex):
            raise SinkError(str(ex)) from ex  # HubStore.reading() words it
        raise SinkError(
            f"cannot read the stored span from {store.store.where}: {one_line(ex)}"
        ) from ex
