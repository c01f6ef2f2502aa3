"""What each CLI command does; thin glue over producers/, streams/ and sinks/."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import time

from wiretide import config
from wiretide.errors import WiretideError


def run_broker(args: argparse.Namespace) -> int:
    from wiretide.broker import local_broker

    broker = local_broker(config.data_dir(args.data), args.port)
    if args.action == "start":
        print(f"Kafka broker up at {broker.start()}")
    elif args.action == "stop":
        print("Kafka broker stopped" if broker.stop() else "no Kafka broker was running")
    else:
        up = broker.is_up()
        print(f"Kafka broker {'up at ' + broker.bootstrap if up else 'not running'}")
        return 0 if up else 1
    return 0


def _policy(path: str | None):  # noqa: ANN202 - returns RedactionPolicy
    from streams.redact import RedactionPolicy

    if not path:
        return RedactionPolicy.default()
    try:
        return RedactionPolicy.from_yaml(path)
    except (OSError, ValueError) as exc:
        raise WiretideError(f"redaction file {path}: {exc}") from None


def run_tap(args: argparse.Namespace) -> int:
    if not args.pcap:
        raise WiretideError("live capture is not available yet: replay a capture with --pcap FILE")
    from producers.batcher import FlowBatcher
    from producers.pcap import ReadStats, read_segments
    from producers.publisher import SegmentPublisher
    from wiretide.broker import resolve_bootstrap
    from wiretide.local import Supervisor, read_status, wait_until_stored
    from wiretide.progress import Progress
    from wiretide.topics import ensure_topics

    _policy(args.redaction)  # fail now on a bad file, not inside a worker
    data = config.data_dir(args.data)
    data.mkdir(parents=True, exist_ok=True)
    segments = read_segments(args.pcap, stats=(stats := ReadStats()))
    first = next(segments, None)  # opens and checks the file before anything starts
    bootstrap = resolve_bootstrap(args.kafka, data)
    ensure_topics(bootstrap)
    progress = Progress(False if args.quiet else None)
    extra = ["--clickhouse", args.clickhouse] if args.clickhouse else []
    if args.redaction:
        os.environ["WIRETIDE_REDACTION"] = os.path.abspath(args.redaction)
    (data / "sink-status.json").unlink(missing_ok=True)
    workers = {f"worker-{i + 1}": [] for i in range(args.workers)}
    supervisor = Supervisor(bootstrap, data, {"sink": extra, **workers})
    started = time.monotonic()
    try:
        publisher = SegmentPublisher(bootstrap)
        batcher = FlowBatcher()
        size = max(1, os.path.getsize(args.pcap))
        if first is not None:
            for seg in itertools.chain((first,), segments):
                full = batcher.add(seg)
                if full is not None:
                    publisher.publish(*full)
                    progress.show(
                        f"reading  {Progress.bar(getattr(stats, 'bytes_read', 0), size)} "
                        f"{stats.packets} packets"
                    )
        for fid, batch in batcher.drain():
            publisher.publish(fid, batch)
        publisher.flush()
        publisher.publish_end_of_capture()
        publisher.flush()

        def on_progress(stage: str, lag: int) -> None:
            stored = read_status(data).get("written", 0)
            progress.show(f"{stage:9s} {lag} messages left, {stored} calls stored")

        wait_until_stored(bootstrap, supervisor, on_progress)
    finally:
        supervisor.stop()
        progress.done()
    elapsed = time.monotonic() - started
    status = read_status(data)
    stored = status.get("stored_after", 0) - status.get("stored_before", 0)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(stats.skipped.items())) or "none"
    print(f"read {stats.packets} packets ({stats.segments} segments); skipped: {skipped}")
    again = status.get("stored_before", 0)
    note = f" ({again} calls were already stored)" if again else ""
    print(f"stored {stored} calls in {elapsed:.2f}s ({stored / elapsed:.0f} calls/s){note}")
    restarts = {r: n for r, n in supervisor.restarts.items() if n}
    if restarts:
        print("restarted after a crash: " + ", ".join(f"{r} x{n}" for r, n in restarts.items()))
    return 0


def run_query(args: argparse.Namespace) -> int:
    from sinks.clickhouse.connect import open_store
    from sinks.clickhouse.reader import read_calls
    from wiretide.kfl import parse, to_sql

    if args.limit is not None and args.limit < 0:
        raise WiretideError("--limit must be zero or more")
    query = parse(args.filter)  # before opening the store: a typo costs nothing
    where, params = to_sql(query)
    limit = args.limit if args.limit is not None else query.limit
    store = open_store(config.store_dsn(config.data_dir(args.data), args.clickhouse))
    calls = read_calls(store, limit=limit, where_sql=where, params=params)
    out = sys.stdout
    for call in calls:
        if args.json:
            out.write(json.dumps(call, ensure_ascii=False) + "\n")
        else:
            out.write(_one_line(call) + "\n")
    return 0


def run_kfl(args: argparse.Namespace) -> int:
    from wiretide.kfl import check, describe_fields

    print(check(args.filter) if args.kfl_command == "check" else describe_fields())
    return 0


def _one_line(call: dict) -> str:
    req, resp = call["request"], call["response"]
    status = resp["status"] if resp else "-"
    elapsed = f"{call['elapsed_ms']:.1f}ms" if call.get("elapsed_ms") is not None else "-"
    src, dst = call["src"], call["dst"]
    target = req["path"] + ("?" + req["query"] if req.get("query") else "")
    return (
        f"{call['timestamp']}  {call['protocol']:5s} {src['ip']}:{src['port']} -> "
        f"{dst['ip']}:{dst['port']}  {req['method']} {target}  {status}  {elapsed}"
    )


def _tune_gc() -> None:
    """Records are acyclic: collect cycles rarely, and never scan the start-up heap again."""
    import gc

    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def run_worker(args: argparse.Namespace) -> int:
    from wiretide.broker import resolve_bootstrap

    os.environ["WIRETIDE_KAFKA"] = resolve_bootstrap(args.kafka, config.data_dir(args.data))
    from streams.app import app

    sys.argv = ["wiretide-worker", "worker", "--loglevel", "warn", "--without-web"]
    _tune_gc()
    app.main()
    return 0


def run_sink(args: argparse.Namespace) -> int:
    from sinks.clickhouse.connect import open_store
    from sinks.clickhouse.reader import count_calls
    from sinks.clickhouse.writer import CallWriter
    from sinks.kafka_writer import CallSink
    from wiretide.broker import resolve_bootstrap
    from wiretide.local import read_status

    data = config.data_dir(args.data)
    bootstrap = resolve_bootstrap(args.kafka, data)
    store = open_store(config.store_dsn(data, args.clickhouse))
    status_file = data / "sink-status.json"
    # A restarted sink keeps the first baseline, so the run's count stays right.
    before = read_status(data).get("stored_before")
    if before is None:
        before = count_calls(store)
        status_file.write_text(json.dumps({"stored_before": before}))
    stopping = []
    _tune_gc()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    sink = CallSink(
        bootstrap,
        CallWriter(store),
        status_file=status_file,
        extra_status={"stored_before": before},
    )
    sink.run(lambda: bool(stopping))
    status = {
        "written": sink.written,
        "dead_letters": sink.dead_letters,
        "stored_before": before,
        "stored_after": count_calls(store),
    }
    status_file.write_text(json.dumps(status))
    return 0
