"""`wiretide otel`: export every call of the calls topic as spans over OTLP
(wiretide.otel.consumer), until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys

from schemas.config import Settings
from wiretide.cli.options import common, positive

NAME = "otel"
HELP = "export every call as OpenTelemetry spans over OTLP"
DESCRIPTION = (
    "Consume the calls topic and export each call as a client and a server span (OTLP, "
    "OpenTelemetry semantic conventions). Offsets are committed after the collector took "
    "the spans; span ids come from the call id, so a replay re-sends the same spans."
)


def ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a ratio from 0 to 1, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint",
        required=True,
        metavar="URL",
        help="the OTLP receiver, e.g. http://collector:4317 (grpc) or http://collector:4318",
    )
    p.add_argument(
        "--protocol", choices=("grpc", "http"), default="grpc", help="OTLP transport (grpc)"
    )
    p.add_argument(
        "--sample",
        type=ratio,
        default=1.0,
        metavar="RATIO",
        help="export this share of traces, 0 to 1 (default 1: all)",
    )
    p.add_argument(
        "--batch", type=positive, default=512, metavar="N", help="calls per export (512)"
    )
    common(p, store=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from wiretide.local import connect
    from wiretide.otel.consumer import CallExporter
    from wiretide.otel.endpoint import parse_endpoint
    from wiretide.otel.sdk import OtlpOut

    endpoint = parse_endpoint(args.endpoint, args.protocol)  # before anything starts
    settings = connect(settings)
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    out = OtlpOut(endpoint)
    print(
        f"wiretide otel: exporting {settings.calls_topic} to {endpoint.url} over OTLP/"
        f"{endpoint.protocol} (sample {args.sample:g}, batch {args.batch})",
        flush=True,
    )
    exporter = CallExporter(settings, out, sample=args.sample, batch=args.batch, say=say)
    try:
        exporter.run(lambda: bool(stopping))
    finally:
        out.close()
    print(
        f"wiretide otel: exported {exporter.exported} spans of {exporter.calls} calls",
        flush=True,
    )
    return 0
