"""`wiretide replay report [RUN] [--json]`: what a run found, from the store.

Matched / changed / failed counts, each changed (and failed) call with its differences
and both answers side by side, and latency p50/p95/p99 recorded vs replayed. Without
RUN: the runs stored, newest first. The hub's /api/replay routes serve the same dicts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from schemas.config import Settings
from schemas.errors import WiretideError
from schemas.replay import ReplayResult
from sinks.clickhouse.connect import Store, open_store
from sinks.clickhouse.datadir import require_store
from sinks.clickhouse.replay_results import (
    RunSummary,
    destination,
    read_latencies,
    read_results,
    read_run,
    read_runs,
)
from wiretide.replay.diff import Percentiles, percentiles

SHOWN_BODY = 16 * 1024  # characters of a body a report shows
DEFAULT_LIMIT = 1000  # changed and failed calls listed


# ------------------------------------------------------------------- pure: dicts out


def run_view(run: RunSummary) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "first_sent_ns": run.first_ns,
        "last_sent_ns": run.last_ns,
        "counts": {
            "total": run.total,
            "matched": run.matched,
            "changed": run.changed,
            "failed": run.failed,
        },
    }


def _percentiles(p: Percentiles) -> dict[str, int]:
    return {"count": p.count, "p50_ns": p.p50_ns, "p95_ns": p.p95_ns, "p99_ns": p.p99_ns}


def _text(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= SHOWN_BODY else text[:SHOWN_BODY] + "…"


def result_view(r: ReplayResult) -> dict[str, Any]:
    call = r.recorded
    return {
        "call_id": call.call_id,
        "copy": r.copy,
        "outcome": r.outcome,
        "sent_ns": r.sent_ns,
        "protocol": call.protocol,
        "method": call.method,
        "path": call.path,
        "dst": destination(call),
        "url": r.request_url,
        "error": r.error,
        "differences": [{"where": w, "recorded": a, "replayed": b} for w, a, b in r.differences],
        "recorded": {
            "status": call.status,
            "latency_ns": call.elapsed_ns,
            "headers": [list(h) for h in call.response_headers],
            "body": _text(call.response_body),
        },
        "replayed": {
            "status": r.status if r.answered else None,
            "latency_ns": r.latency_ns if r.answered else None,
            "headers": [list(h) for h in r.response_headers],
            "body": _text(r.response_body),
        },
    }


def report_view(
    run: RunSummary,
    recorded_ns: Sequence[int],
    replayed_ns: Sequence[int],
    results: Sequence[ReplayResult],
) -> dict[str, Any]:
    """A run's report: its counts, latency percentiles and the calls that did not match."""
    return {
        **run_view(run),
        "latency": {
            "recorded": _percentiles(percentiles(recorded_ns)),
            "replayed": _percentiles(percentiles(replayed_ns)),
        },
        "changed": [result_view(r) for r in results if r.outcome == "changed"],
        "failed": [result_view(r) for r in results if r.outcome == "failed"],
    }


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms"


def format_report(report: dict[str, Any]) -> str:
    c = report["counts"]
    lines = [
        f"replay run {report['run_id']}: {c['total']} calls sent, {c['matched']} matched, "
        f"{c['changed']} changed, {c['failed']} failed",
        "latency        p50        p95        p99",
    ]
    for side in ("recorded", "replayed"):
        p = report["latency"][side]
        cells = "".join(f"{_ms(p[k]):>11}" for k in ("p50_ns", "p95_ns", "p99_ns"))
        lines.append(f"{side:<9}{cells}   ({p['count']} calls)")
    for kind in ("changed", "failed"):
        if report[kind]:
            lines.append(f"{kind}:")
        for v, copies in _same_differences(report[kind]):
            shown = f" (copies {_spans(copies)})" if copies != [0] else ""
            lines.append(f"  {v['method']} {v['path']} -> {v['dst']}  [{v['call_id']}]{shown}")
            for d in v["differences"]:
                lines.append(f"    {d['where']}: {d['recorded']!s} -> {d['replayed']!s}")
    return "\n".join(lines)


def _same_differences(views: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], list[int]]]:
    """Copies of a call that differ the same way, as one entry with their copy numbers."""
    groups: dict[tuple, tuple[dict[str, Any], list[int]]] = {}
    for v in views:
        key = (v["call_id"], tuple(tuple(d.values()) for d in v["differences"]))
        groups.setdefault(key, (v, []))[1].append(v["copy"])
    return list(groups.values())


def _spans(numbers: list[int]) -> str:
    """[0, 1, 2, 4] -> "0-2, 4"."""
    out, ordered = [], sorted(numbers)
    start = prev = ordered[0]
    for n in [*ordered[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


def format_runs(runs: Sequence[dict[str, Any]]) -> str:
    """`run_view`s as a table."""
    if not runs:
        return "no replay runs stored"
    lines = [f"{'RUN':<28}{'CALLS':>8}{'MATCHED':>9}{'CHANGED':>9}{'FAILED':>8}"]
    for r in runs:
        c = r["counts"]
        cells = f"{c['total']:>8}{c['matched']:>9}{c['changed']:>9}{c['failed']:>8}"
        lines.append(f"{r['run_id']:<28}{cells}")
    return "\n".join(lines)


# -------------------------------------------------------------------- reads: the store


def load_report(store: Store, run_id: str, limit: int = DEFAULT_LIMIT) -> dict[str, Any] | None:
    """The report of `run_id` from the store, None if it has no such run."""
    run = read_run(store, run_id)
    if run is None:
        return None
    recorded_ns, replayed_ns = read_latencies(store, run_id)
    results = read_results(store, run_id, ("changed", "failed"), limit=limit)
    return report_view(run, recorded_ns, replayed_ns, results)


# ------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", metavar="RUN", help="run id; none: list the runs")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"changed and failed calls listed (default {DEFAULT_LIMIT})",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from wiretide.hub.client import find_owner

    hub = find_owner(settings)
    if hub is not None:  # a tap or hub holds the store: ask it
        got = _from_hub(hub, args)
    else:
        got = _from_store(settings, args)
    if got is None:
        raise WiretideError(
            f"no replay run {args.run!r} in the store {settings.store_dsn}; "
            "`wiretide replay report` lists them"
        )
    if args.json:
        print(json.dumps(got, ensure_ascii=False))
    else:
        print(format_report(got) if args.run else format_runs(got))
    return 0


def _from_store(settings: Settings, args: argparse.Namespace) -> Any:
    dsn = settings.store_dsn
    require_store(dsn)
    with open_store(dsn, ttl_days=None, cluster=settings.clickhouse_cluster) as store:
        if not args.run:
            return [run_view(r) for r in read_runs(store)]
        return load_report(store, args.run, args.limit)


def _from_hub(hub: Any, args: argparse.Namespace) -> Any:
    from wiretide.hub.client import HubCallError

    if not args.run:
        return hub.get_json("/api/replay/runs")
    try:
        return hub.get_json(f"/api/replay/runs/{quote(args.run, safe='')}", {"limit": args.limit})
    except HubCallError as ex:
        if str(ex).startswith("no replay run"):
            return None
        raise
