"""`wiretide query [KFL]`: print stored calls, newest last."""

from __future__ import annotations

import argparse
import json
import sys

from schemas.config import Settings
from wiretide.cli.options import common, count, kfl_filter

NAME = "query"
HELP = "print stored calls, newest last"


def add_arguments(query: argparse.ArgumentParser) -> None:
    kfl_filter(query, "a KFL filter, e.g. 'http and response.status >= 500' (default: every call)")
    query.add_argument("--json", action="store_true", help="one JSON object per line")
    query.add_argument("--limit", type=count, metavar="N", help="print only the newest N calls")
    common(query, kafka=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: KFL and the store load pyarrow and chDB (about a second).
    from sinks.clickhouse import datadir
    from sinks.clickhouse.connect import open_store
    from sinks.clickhouse.reader import read_calls, stream_calls
    from wiretide.hub.client import find_owner
    from wiretide.kfl import parse, to_sql

    query = parse(args.filter)  # before opening the store: a typo costs nothing
    where, params = to_sql(query)
    limit = args.limit if args.limit is not None else query.limit
    out = sys.stdout
    hub = find_owner(settings)
    if hub is not None:  # a tap owns the store: ask it
        for line in hub.lines("/api/export.jsonl", {"q": args.filter, "limit": limit}):
            out.write((line if args.json else one_line(json.loads(line))) + "\n")
        return 0
    dsn = settings.store_dsn
    datadir.require_store(dsn)
    with open_store(dsn, ttl_days=None, cluster=settings.clickhouse_cluster) as store:
        if limit is None:  # printed as they come: memory stays flat for any number
            calls = stream_calls(store, where_sql=where, params=params)
        else:  # the newest `limit`, oldest first: at most `limit` held
            calls = iter(read_calls(store, limit=limit, where_sql=where, params=params))
        for call in calls:
            out.write(
                (json.dumps(call, ensure_ascii=False) if args.json else one_line(call)) + "\n"
            )
    return 0


def one_line(call: dict) -> str:
    req, resp = call["request"], call["response"]
    status = resp["status"] if resp else "-"
    elapsed = f"{call['elapsed_ms']:.1f}ms" if call.get("elapsed_ms") is not None else "-"
    src, dst = call["src"], call["dst"]
    target = req["path"] + ("?" + req["query"] if req.get("query") else "")
    return (
        f"{call['timestamp']}  {call['protocol']:5s} {src['ip']}:{src['port']} -> "
        f"{dst['ip']}:{dst['port']}  {req['method']} {target}  {status}  {elapsed}"
    )
