"""`wiretide health COMPONENT`: exit 0 when a local process is alive (a probe)."""

from __future__ import annotations

import argparse
import sys

from schemas.config import Settings
from schemas.runtime import health
from wiretide.cli.options import common, seconds

NAME = "health"
HELP = "exit 0 when a local process is alive (a probe)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("component", choices=["agent", "worker", "sink", "otel"])
    p.add_argument(
        "--max-age",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="the heartbeat may be this old (default 30)",
    )
    common(p, kafka=False, store=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    ok, message = health.check(args.component, args.max_age, settings.data)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
