"""Which calls a replay sends: stored ones (through the hub that owns the data dir, as
`wiretide query` does, else straight from storage) or the calls of a capture file (the
local pipeline's dissect path, nothing stored), filtered by KFL and a time window.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.config import Settings
from schemas.records import ApiCall
from wiretide.replay.targets import ReplayError
from wiretide.window import parse_time


def time_bounds(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """[since, until) in Unix ns from `--since`/`--until` (None: open)."""
    now = datetime.now(UTC)
    out: list[int | None] = []
    for flag, text in (("--since", since), ("--until", until)):
        if not text:
            out.append(None)
            continue
        try:
            at = parse_time(text, now)
        except ValueError as ex:
            raise ReplayError(f"{flag}: {ex}") from None
        out.append(int(at.timestamp() * 1e9))
    low, high = out
    if low is not None and high is not None and high <= low:
        raise ReplayError("--until is not after --since")
    return low, high


def with_window(kfl: str, low: int | None, high: int | None) -> str:
    """The KFL filter with the time window added (timestamp_ns is a stored integer)."""
    parts = [f"({kfl})"] if kfl.strip() else []
    if low is not None:
        parts.append(f"timestamp_ns >= {low}")
    if high is not None:
        parts.append(f"timestamp_ns < {high}")
    return " and ".join(parts)


def stored_calls(settings: Settings, kfl: str, limit: int | None) -> list[ApiCall]:
    """Matching stored calls, oldest first: the hub's API if a tap or hub owns the store."""
    from sinks.clickhouse import datadir
    from sinks.clickhouse.connect import open_store
    from sinks.clickhouse.reader import read_calls, stream_calls
    from wiretide.hub.client import find_owner
    from wiretide.kfl import parse, to_sql

    query = parse(kfl)  # before opening the store: a typo costs nothing
    limit = limit if limit is not None else query.limit
    hub = find_owner(settings)
    if hub is not None:
        lines = hub.lines("/api/export.jsonl", {"q": kfl, "limit": limit})
        return [from_view(json.loads(line)) for line in lines]
    where, params = to_sql(query)
    dsn = settings.store_dsn
    datadir.require_store(dsn)
    with open_store(dsn, ttl_days=None, cluster=settings.clickhouse_cluster) as store:
        if limit is None:
            views: Iterable[dict] = stream_calls(store, where_sql=where, params=params)
        else:
            views = read_calls(store, limit=limit, where_sql=where, params=params)
        return [from_view(v) for v in views]


def pcap_calls(path: str, kfl: str, limit: int | None) -> list[ApiCall]:
    """The calls of a capture, as the pipeline makes them (redacted as stored ones are),
    oldest first, filtered by KFL."""
    from producers.pcap import read_segments
    from sinks.clickhouse.view import call_view
    from streams.dissect.registry import default_registry
    from streams.pipeline import Pipeline
    from streams.redact import RedactionPolicy
    from wiretide.kfl import parse, to_predicate

    query = parse(kfl)
    keep = to_predicate(query)
    if not Path(path).is_file():
        raise ReplayError(f"--pcap {path}: no such file")
    pipe = Pipeline(default_registry(), RedactionPolicy.default())
    calls: list[ApiCall] = []
    for token, seg in enumerate(read_segments(path)):
        calls += pipe.process(token, [seg]).calls
    calls += pipe.finish().calls
    calls = sorted((c for c in calls if keep(call_view(c))), key=lambda c: (c.ts_ns, c.call_id))
    limit = limit if limit is not None else query.limit
    return calls[-limit:] if limit else calls


def _body(side: dict[str, Any]) -> bytes:
    body = side.get("body") or ""
    if side.get("body_encoding") == "base64":
        return base64.b64decode(body)
    return body.encode()


def _ident(side: dict[str, Any]) -> tuple[str, str, str]:
    pod, svc = side.get("pod") or {}, side.get("service") or {}
    namespace = side.get("namespace") or ""
    return pod.get("name") or "", namespace, svc.get("name") or ""


def from_view(view: dict[str, Any]) -> ApiCall:
    """A call back from the dict `query --json` and the hub show (sinks.clickhouse.view);
    repeated header names come back joined, as the view holds them."""
    req, resp = view["request"], view.get("response")
    src_pod, src_ns, src_svc = _ident(view["src"])
    dst_pod, dst_ns, dst_svc = _ident(view["dst"])
    out: dict[str, Any] = {}
    if resp is not None:
        elapsed_ns = round((view.get("elapsed_ms") or 0) * 1e6)
        out = {
            "status": resp.get("status", 0),
            "reason": resp.get("reason", ""),
            "response_version": resp.get("version", ""),
            "response_headers": tuple(resp.get("headers", {}).items()),
            "response_body": _body(resp),
            "response_body_size": resp.get("body_size", 0),
            "response_ts_ns": view["timestamp_ns"] + max(elapsed_ns, 1),
        }
    return ApiCall(
        call_id=view["id"],
        protocol=view["protocol"],
        ts_ns=view["timestamp_ns"],
        src_ip=view["src"]["ip"],
        src_port=view["src"]["port"],
        dst_ip=view["dst"]["ip"],
        dst_port=view["dst"]["port"],
        flow_id=view.get("flow_id", ""),
        node=view.get("node", ""),
        source=view.get("source", "pcap"),
        tls=bool(view.get("tls")),
        method=req.get("method", ""),
        path=req.get("path", ""),
        query=req.get("query", ""),
        request_version=req.get("version", ""),
        request_headers=tuple(req.get("headers", {}).items()),
        request_body=_body(req),
        request_body_size=req.get("body_size", 0),
        flags=tuple(view.get("flags", ())),
        src_pod=src_pod,
        src_namespace=src_ns,
        src_service=src_svc,
        dst_pod=dst_pod,
        dst_namespace=dst_ns,
        dst_service=dst_svc,
        verdicts=tuple((view.get("verdicts") or {}).items()),
        **out,
    )
