"""`wiretide sink`: a ClickHouse writer in the foreground (sinks.clickhouse.sink), and
with --serve the hub API beside it on the same open store."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from schemas.config import Settings
from schemas.errors import WiretideError
from schemas.runtime.sink_status import SinkStatus
from wiretide.cli import metrics_port
from wiretide.cli.options import common
from wiretide.cli.worker import tune_gc

NAME = "sink"
HELP = "run a ClickHouse writer in the foreground"


def add_arguments(sink: argparse.ArgumentParser) -> None:
    sink.add_argument(
        "--serve",
        metavar="HOST:PORT",
        help="also serve the hub API/UI from this process, on the same open store",
    )
    common(sink)
    metrics_port.add(sink)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: chDB and Kafka (most of a second), while a tap's broker may still start.
    from sinks.clickhouse.connect import open_store
    from sinks.clickhouse.reader import count_calls
    from sinks.clickhouse.sink import CallSink
    from sinks.clickhouse.writer import CallWriter
    from wiretide.local import connect

    settings = connect(settings)
    metrics_port.start(args, NAME, settings)

    data = settings.data
    store = open_store(
        settings.store_dsn, ttl_days=settings.retention_days, cluster=settings.clickhouse_cluster
    )
    # A restarted sink keeps the first baseline, so the run's count stays right.
    before = SinkStatus.read(data).stored_before
    if before is None:
        before = count_calls(store)
        SinkStatus(stored_before=before).write(data)
    stopping = []
    tune_gc()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    writer, hub = CallWriter(store), None
    if args.serve:
        writer, hub = _serve_beside_sink(args.serve, store, writer, settings)
    try:
        sink = CallSink(settings, writer, status=SinkStatus(stored_before=before))
        sink.run(lambda: bool(stopping))
    finally:
        if hub is not None:
            hub.stop(data)
        elif args.serve:
            from wiretide.hub.client import withdraw

            withdraw(data)  # the note saying why there is no hub
    after = count_calls(store)
    SinkStatus(sink.written, sink.dead_letters, os.getpid(), before, after).write(data)
    return 0


def _serve_beside_sink(listen: str, store, writer, settings: Settings):  # noqa: ANN001, ANN202
    """The hub in this process on the sink's open store (chDB has one owner): inserts and
    the hub's reads take turns on one lock. (writer, ServedHub); a hub that cannot start
    is one line in the log, and the sink goes on."""
    from wiretide.hub.serve import ServedHub, SharedStoreWriter
    from wiretide.hub.store import HubStore

    shared = HubStore(store)
    try:
        hub = ServedHub.start(shared, listen, settings, lambda: settings.kafka)
    except WiretideError as ex:
        print(f"wiretide sink: not serving the hub: {ex}", file=sys.stderr, flush=True)
        from wiretide.hub.client import advertise

        advertise(settings.data, None, None, error=str(ex))  # the tap waiting for it learns why
        return writer, None
    print(f"wiretide sink: hub listening on {hub.url}", flush=True)
    return SharedStoreWriter(writer, shared.lock), hub
