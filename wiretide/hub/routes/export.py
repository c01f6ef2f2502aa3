"""Export routes: the packets behind a filter as a capture file, and the calls themselves
as JSON lines (what `wiretide query --json` prints).

    GET /api/export.pcap?q=KFL&since=&until=&format=pcap|pcapng&exact=false
    GET /api/export.jsonl?q=KFL&limit=N

The pcap's segments come from the segments topic on the Kafka of the hub's settings (set
for a hub started by `wiretide tap`), else of the data dir's local broker if it runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from schemas.config import Settings
from sinks.errors import SinkError
from wiretide.call_packets import neighbour_spans, tighten
from wiretide.export import ExportError, export_from_kafka, find_spans, parse_time
from wiretide.hub.app import ApiError
from wiretide.hub.models import ErrorBody
from wiretide.hub.store import HubStore
from wiretide.kfl import KflError, parse, to_sql

_PAGE = 5000
_PCAP_TYPES = {"pcap": "application/vnd.tcpdump.pcap", "pcapng": "application/x-pcapng"}
_KFL = Annotated[str, Query(max_length=10_000, description="KFL filter")]
_TIME = "a time ago (30s, 5m, 2h, 1d) or an ISO time (2026-05-01T12:00:00Z)"
_EXACT = (
    "only these calls' packets: each call's window stops at the calls before and after it "
    "on its connection (default: a second around each call, neighbours included)"
)


def _bad_filter(ex: Exception) -> ApiError:
    if isinstance(ex, KflError):
        return ApiError(400, ErrorBody(error=str(ex), line=ex.line, column=ex.column))
    return ApiError(400, f"this filter could not be read: {ex}")


def _bootstrap(settings: Settings) -> str:
    if settings.kafka:
        return settings.kafka
    from wiretide.broker import local_broker

    broker = local_broker(settings)
    if broker.is_up():
        return broker.bootstrap
    raise ApiError(503, "no Kafka broker to read packets from; start the hub with WIRETIDE_KAFKA")


def router(store: HubStore) -> APIRouter:
    api = APIRouter(tags=["export"])
    _add_pcap_route(api, store)
    _add_jsonl_route(api, store)
    return api


def _add_pcap_route(api: APIRouter, store: HubStore) -> None:
    @api.get(
        "/export.pcap",
        response_class=Response,
        responses={
            200: {
                "content": {t: {} for t in _PCAP_TYPES.values()},
                "description": "the capture; X-Wiretide-Calls (matching), "
                "X-Wiretide-Exported-Calls (with packets) and X-Wiretide-Packets say what it holds",
            },
            404: {"model": ErrorBody, "description": "no stored call matches"},
            410: {"model": ErrorBody, "description": "the packets of every match are gone"},
            503: {"model": ErrorBody, "description": "the store or Kafka failed"},
        },
    )
    def export_pcap(
        request: Request,
        q: _KFL = "",
        since: Annotated[str | None, Query(max_length=100, description=_TIME)] = None,
        until: Annotated[str | None, Query(max_length=100, description=_TIME)] = None,
        format: Literal["pcap", "pcapng"] = "pcap",  # noqa: A002 - the query parameter's name
        exact: Annotated[bool, Query(description=_EXACT)] = False,
    ) -> Response:
        """The packets behind the matching calls (raw IP, real ports, seq/ack and flags),
        read from the segments topic while Kafka still keeps them."""
        try:
            parse(q)
        except Exception as ex:
            raise _bad_filter(ex) from None
        try:
            since_ns = parse_time(since, "since") if since else None
            until_ns = parse_time(until, "until") if until else None
        except ExportError as ex:
            raise ApiError(400, str(ex)) from None
        try:
            with store.reading():  # chDB takes one query at a time
                spans = find_spans(store.reads.client, q, since_ns, until_ns)
                if exact and spans:
                    around = neighbour_spans(store.reads.client, (s.flow_id for s in spans))
                    spans = tighten(spans, around)
        except ExportError as ex:
            raise ApiError(503, str(ex)) from None
        if not spans:
            raise ApiError(404, "no stored call matches; nothing to export")
        settings = request.app.state.settings
        settings = settings.replace(kafka=_bootstrap(settings))
        try:
            result = export_from_kafka(settings, spans, format)
        except ExportError as ex:
            raise ApiError(410 if "gone" in str(ex) else 503, str(ex)) from None
        return Response(
            result.data,
            media_type=_PCAP_TYPES[format],
            headers={
                "Content-Disposition": f'attachment; filename="wiretide.{format}"',
                "X-Wiretide-Calls": str(result.calls),
                "X-Wiretide-Exported-Calls": str(result.exported),
                "X-Wiretide-Packets": str(result.packets),
            },
        )


def _add_jsonl_route(api: APIRouter, store: HubStore) -> None:
    @api.get(
        "/export.jsonl",
        response_class=Response,
        responses={
            200: {"content": {"application/x-ndjson": {}}, "description": "one call a line"},
            503: {"model": ErrorBody, "description": "the store failed"},
        },
    )
    def export_jsonl(
        q: _KFL = "",
        limit: Annotated[
            int | None, Query(ge=0, description="only the newest N (default: the filter's)")
        ] = None,
    ) -> Response:
        """Every matching call in full, oldest first, one JSON object a line."""
        try:
            query = parse(q)
            where, params = to_sql(query)
        except Exception as ex:
            raise _bad_filter(ex) from None
        wanted = limit if limit is not None else query.limit
        calls: list[dict] = []
        cursor = None
        try:  # page by page, so the writer gets its turns on the store in between
            while wanted is None or len(calls) < wanted:
                size = _PAGE if wanted is None else min(_PAGE, wanted - len(calls))
                page = store.page(where, params, size, cursor)
                calls.extend(page.calls)
                cursor = page.next
                if cursor is None:
                    break
        except SinkError as ex:
            raise ApiError(503, str(ex)) from None
        calls.reverse()
        body = "".join(json.dumps(call, ensure_ascii=False) + "\n" for call in calls)
        return Response(body.encode(), media_type="application/x-ndjson")
