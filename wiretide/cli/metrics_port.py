"""`--metrics-port` of the pipeline's processes (agent, worker, sink): their own health
counters (schemas/runtime/metrics.py) on http://0.0.0.0:PORT/metrics. Off by default: in
`tap` the processes share one host, and the hub's /metrics serves the traffic's RED
metrics, the consumer lag and every tap process's counters (`share_with_children`)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from schemas.config import Settings


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=_port,
        help="serve Prometheus metrics on PORT (default: $WIRETIDE_METRICS_PORT, else off)",
    )


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number (1-65535), got {text!r}")
    return int(text)


def start(args: argparse.Namespace, role: str, settings: Settings) -> None:
    """Start the listener if a port was given (the flag, else the settings); a port that
    cannot be had is one line on stderr, and the process goes on without it."""
    port = getattr(args, "metrics_port", None) or settings.metrics_port
    if port is None:
        return
    from schemas.runtime.metrics import serve

    why = serve(port)
    if why is not None:
        print(f"wiretide {role}: {why}", file=sys.stderr, flush=True)


def capture_counters(settings: Settings):  # noqa: ANN201
    """The agent's capture counters, labelled with this node."""
    from schemas.runtime.metrics import CaptureCounters

    return CaptureCounters(settings.node or os.uname().nodename)


MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode


def share_with_children(data: Path) -> None:
    """A tap's processes (itself, its workers, its writer) keep their counters in files
    under <data>/metrics/ (prometheus_client's multiprocess mode, handed down in the
    environment), which the tap's hub adds up on its /metrics, the keep-ui hub too. Emptied
    at each tap: its counters start at zero; a process that ended stays counted."""
    if "prometheus_client" in sys.modules or MULTIPROCESS in os.environ:
        return  # too late for this process, or someone chose a dir already
    where = data / "metrics"
    try:
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
    except OSError:
        return  # a data dir that cannot hold them: each process keeps its own (not served)
    os.environ[MULTIPROCESS] = str(where)
