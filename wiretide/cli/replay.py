"""`wiretide replay [KFL] --target SPEC...`: send stored calls (or a capture's) again.

wiretide replay 'http and dst.service.name == "orders"' --target http://127.0.0.1:8080
wiretide replay --pcap c.pcap --target svc/orders=http://orders-v2:8080 --speed 2x
wiretide replay --copies 5 --speed max --target http://127.0.0.1:8080   # 5x the load
wiretide replay --dry-run --target http://127.0.0.1:8080                # print, send nothing
wiretide replay report RUN [--json]                                     # a run's results
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from schemas.config import Settings

if TYPE_CHECKING:  # the replay modules load at run time only (the CLI starts fast)
    from schemas.records import ApiCall
    from wiretide.replay.engine import SendOptions
    from wiretide.replay.model import Exchange, SentRequest
    from wiretide.replay.pacing import Pacing
    from wiretide.replay.plan import Options, Skip
    from wiretide.replay.run import Outcome

    Planned = Sequence[SentRequest | Skip]
from wiretide.cli.options import common, count, positive, seconds

NAME = "replay"
HELP = "send stored calls again at a target (replay, load simulation) and show what changed"
DESCRIPTION = (
    "Sends the calls a KFL filter selects (or the calls of --pcap FILE) at --target. Only "
    "GET, HEAD and OPTIONS, gRPC and GraphQL queries are sent unless --allow-methods; values "
    "the capture redacted must be given (--set-header, --set-query, --secrets) or those calls "
    "are skipped. Each request carries x-wiretide-replay: RUN unless --no-mark. "
    "`wiretide replay report RUN [--json]` shows a stored run."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "words",
        nargs="*",
        metavar="KFL",
        help="which calls (default: every call); or: report RUN",
    )
    sel = p.add_argument_group("selecting")
    sel.add_argument("--since", metavar="WHEN", help="calls from then (30s, 15m, 2h, RFC 3339)")
    sel.add_argument("--until", metavar="WHEN", help="calls before then")
    sel.add_argument("--pcap", metavar="FILE", help="the calls of this capture, not stored ones")
    sel.add_argument("--limit", type=positive, metavar="N", help="only the newest N calls")
    sel.add_argument(
        "--target",
        action="append",
        metavar="SPEC",
        help="URL (every call), svc/NAME=URL or HOST:PORT=URL (repeatable); required",
    )
    pace = p.add_argument_group("pacing")
    pace.add_argument("--speed", default="1x", metavar="1x|2x|max", help="recorded timing, sped up")
    pace.add_argument("--rate", metavar="N/s", help="a fixed rate instead of recorded timing")
    pace.add_argument("--copies", type=positive, default=1, metavar="N", help="each call N times")
    pace.add_argument("--ramp", metavar="DURATION", help="grow to full pace over this (10s)")
    pace.add_argument("--loop", action="store_true", help="start again after the last call")
    pace.add_argument("--duration", metavar="DURATION", help="stop sending after this (2m)")
    pace.add_argument(
        "--concurrency", type=positive, default=32, metavar="N", help="requests in flight (32)"
    )
    pace.add_argument(
        "--timeout", type=seconds, default=30.0, metavar="SECONDS", help="per request (30)"
    )
    _safety_and_rewrites(p)
    out = p.add_argument_group("output")
    out.add_argument("--dry-run", action="store_true", help="print what would be sent, send none")
    out.add_argument(
        "--progress", action="store_true", help="progress line on stderr (default: on a TTY)"
    )
    out.add_argument("--json", action="store_true", help="the summary (or report) as JSON")
    out.add_argument("--run-id", metavar="RUN", help="name of this run (default: r<time>-<hex>)")
    out.add_argument(
        "--learn",
        type=count,
        default=20,
        metavar="N",
        help="replay N calls twice first to learn volatile fields (default 20; 0: off)",
    )
    common(p)


def _safety_and_rewrites(p: argparse.ArgumentParser) -> None:
    safe = p.add_argument_group("safety and secrets")
    safe.add_argument("--allow-methods", metavar="M,M", help="also send these, e.g. POST,PUT")
    safe.add_argument("--send-redacted", action="store_true", help="send [REDACTED] as it is")
    safe.add_argument("--secrets", metavar="FILE", help="NAME=VALUE lines filling redacted values")
    safe.add_argument("--insecure", action="store_true", help="https: skip certificate checks")
    rw = p.add_argument_group("rewrites")
    rw.add_argument("--set-header", action="append", metavar="NAME=VALUE")
    rw.add_argument("--drop-header", action="append", metavar="NAME")
    rw.add_argument("--set-query", action="append", metavar="NAME=VALUE")
    rw.add_argument("--path-prefix", action="append", metavar="/OLD=/NEW")
    rw.add_argument("--set-json", action="append", metavar="PATH=VALUE", help="e.g. $.user.id=7")
    rw.add_argument("--no-mark", action="store_true", help="no x-wiretide-replay header")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.words[:1] == ["report"]:
        return _report(args, settings)
    from wiretide.replay import source
    from wiretide.replay.run import new_run_id, plan_all
    from wiretide.replay.targets import ReplayError

    kfl = " ".join(args.words)
    if not args.target:
        raise ReplayError(
            "give --target URL (or svc/NAME=URL, HOST:PORT=URL): nothing is sent without one"
        )
    run_id = args.run_id or new_run_id()
    options, pacing, send_opts = _config(args, run_id)
    low, high = source.time_bounds(args.since, args.until)
    kfl = source.with_window(kfl, low, high)
    if args.pcap:
        calls = source.pcap_calls(args.pcap, kfl, args.limit)
    else:
        calls = source.stored_calls(settings, kfl, args.limit)
    if not calls:
        raise ReplayError("no calls match" + (f" {kfl!r}" if kfl else ""))
    requests = plan_all(calls, options)
    if args.dry_run:
        return _dry_run(args, calls, requests, pacing)
    return _send(args, settings, run_id, calls, requests, pacing, send_opts)


def _config(args: argparse.Namespace, run_id: str) -> tuple[Options, Pacing, SendOptions]:
    from wiretide.replay import flags
    from wiretide.replay.engine import SendOptions
    from wiretide.replay.pacing import Pacing, check, parse_rate, parse_speed
    from wiretide.replay.plan import Options
    from wiretide.replay.targets import parse_targets

    options = Options(
        targets=parse_targets(args.target),
        run_id=run_id,
        mark=not args.no_mark,
        allow_methods=flags.methods(args.allow_methods),
        set_headers=flags.pairs("--set-header", args.set_header, header=True),
        drop_headers=frozenset(h.strip().lower() for h in args.drop_header or ()),
        set_query=flags.pairs("--set-query", args.set_query),
        secrets=flags.secrets_file(args.secrets),
        path_prefix=flags.prefixes(args.path_prefix),
        set_json=flags.json_settings(args.set_json),
        send_redacted=args.send_redacted,
    )
    pacing = Pacing(
        speed=parse_speed(args.speed),
        rate=parse_rate(args.rate) if args.rate else None,
        copies=args.copies,
        ramp_s=flags.duration("--ramp", args.ramp) or 0.0,
        loop=args.loop,
    )
    check(pacing)
    send_opts = SendOptions(
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        duration_s=flags.duration("--duration", args.duration),
        insecure=args.insecure,
        progress=args.progress or sys.stderr.isatty(),
    )
    return options, pacing, send_opts


def _dry_run(
    args: argparse.Namespace, calls: Sequence[ApiCall], requests: Planned, pacing: Pacing
) -> int:
    from wiretide.replay.plan import Skip
    from wiretide.replay.run import dry_run_lines
    from wiretide.replay.stats import Stats

    for line in dry_run_lines(calls, requests):
        sys.stdout.write(line + "\n")
    stats = Stats()
    for req in requests:
        if isinstance(req, Skip):
            stats.skip(req)
    sendable = len(requests) - sum(stats.skipped.values())
    copies = f", {pacing.copies} copies each" if pacing.copies > 1 else ""
    sys.stderr.write(f"dry run: {sendable} of {len(calls)} calls would be sent{copies}\n")
    for line in stats.skip_lines():
        sys.stderr.write(line + "\n")
    return 0


def _send(
    args: argparse.Namespace,
    settings: Settings,
    run_id: str,
    calls: Sequence[ApiCall],
    requests: Planned,
    pacing: Pacing,
    send_opts: SendOptions,
) -> int:
    from wiretide.replay.run import learn, optional, print_summary, replay

    diff, results = optional("diff"), optional("results")
    volatile = None
    if diff is not None and args.learn:
        volatile = learn(diff, run_id, calls, requests, args.learn, send_opts)
    store, writer = _results_writer(settings, results) if diff is not None else (None, None)
    verdicts: dict[str, int] = {}

    def on_exchange(exchange: Exchange) -> None:
        if diff is None:
            return
        extra = (volatile,) if volatile is not None else ()
        verdict = diff.compare(exchange, *extra)
        verdicts[verdict.outcome] = verdicts.get(verdict.outcome, 0) + 1
        if writer is not None:
            writer.write(exchange, verdict)

    try:
        outcome = replay(run_id, calls, requests, pacing, send_opts, on_exchange)
    finally:
        try:
            if writer is not None:
                writer.close()
        finally:
            if store is not None:
                store.close()
    outcome.verdicts.update(verdicts)
    if args.json:
        sys.stdout.write(json.dumps(_summary_json(run_id, outcome)) + "\n")
    else:
        print_summary(outcome, run_id)
        if writer is not None:
            sys.stdout.write(f"details: wiretide replay report {run_id}\n")
    return 0


def _results_writer(settings: Settings, results: Any) -> tuple[Any, Any]:
    # (Store | None, ResultWriter | None); `results` is the module, when it is there
    """The results writer: Kafka when configured, and the store unless a hub holds it."""
    if results is None:
        return None, None
    from schemas.errors import WiretideError
    from sinks.clickhouse.connect import open_store
    from wiretide.hub.client import find_owner

    store = None
    if find_owner(settings) is not None:
        with_kafka = getattr(results, "with_kafka", lambda _settings: None)
        if with_kafka(settings) is None:  # else they reach the hub through Kafka
            sys.stderr.write(
                "replay: results not stored: a running tap or hub holds the data dir "
                "and no Kafka carries them to it\n"
            )
    else:
        try:
            dsn, cluster = settings.store_dsn, settings.clickhouse_cluster
            store = open_store(dsn, ttl_days=None, cluster=cluster)
        except WiretideError as ex:
            sys.stderr.write(f"replay: results not stored: {ex}\n")
    try:
        return store, results.ResultWriter(settings, store)
    except BaseException:
        if store is not None:
            store.close()
        raise


def _summary_json(run_id: str, outcome: Outcome) -> dict[str, Any]:
    stats = outcome.stats
    return {
        "run": run_id,
        "sent": stats.sent,
        "answered": stats.answered,
        "failed": stats.errors,
        "seconds": round(outcome.elapsed_s, 3),
        "latency_ms": {f"p{p}": stats.percentile_ms(p) for p in (50, 95, 99)},
        "late": stats.late,
        "skipped": dict(stats.skipped),
        "verdicts": dict(outcome.verdicts),
    }


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from wiretide.replay.run import optional
    from wiretide.replay.targets import ReplayError

    report = optional("report")
    if report is None:
        raise ReplayError("replay reports are not available in this build")
    if len(args.words) > 2:
        raise ReplayError("usage: wiretide replay report [RUN] [--json] [--limit N]")
    run_id = args.words[1] if len(args.words) == 2 else None
    limit = args.limit if args.limit is not None else report.DEFAULT_LIMIT
    return report.run(argparse.Namespace(run=run_id, json=args.json, limit=limit), settings)
