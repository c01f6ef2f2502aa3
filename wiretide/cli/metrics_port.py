"""`--metrics-port` of the pipeline's processes (agent, worker, sink): their own health
counters (schemas/runtime/metrics.py) on http://0.0.0.0:PORT/metrics. Off by default: in
`tap` the processes share one host, and the hub's /metrics serves the traffic's RED
metrics, the consumer lag and the writer's counters."""

from __future__ import annotations

import argparse
import os
import sys

ENV = "WIRETIDE_METRICS_PORT"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=_port,
        help=f"serve this process's Prometheus metrics on PORT (default: ${ENV}, else off)",
    )


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number (1-65535), got {text!r}")
    return int(text)


def start(args: argparse.Namespace, role: str) -> None:
    """Start the listener if a port was given; a port that cannot be had is one line on
    stderr, and the process goes on without it."""
    port = getattr(args, "metrics_port", None)
    if port is None:
        text = os.environ.get(ENV, "").strip()
        if not text:
            return
        try:
            port = _port(text)
        except argparse.ArgumentTypeError as ex:
            print(f"wiretide {role}: {ENV}: {ex}; metrics not served", file=sys.stderr)
            return
    from schemas.runtime.metrics import serve

    why = serve(port)
    if why is not None:
        print(f"wiretide {role}: {why}", file=sys.stderr, flush=True)


def capture_counters():  # noqa: ANN201
    """The agent's capture counters, labelled with this node."""
    from schemas.runtime.metrics import CaptureCounters

    return CaptureCounters(os.environ.get("WIRETIDE_NODE") or os.uname().nodename)
