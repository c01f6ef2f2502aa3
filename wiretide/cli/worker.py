"""`wiretide worker`: a stream worker in the foreground (streams.app)."""

from __future__ import annotations

import argparse
import gc

from schemas.config import Settings
from wiretide.cli.options import common

NAME = "worker"


def add_parser(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser(NAME, help="run a stream worker in the foreground")
    common(worker, store=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from wiretide.local import connect

    settings = connect(settings)
    from streams.app import run as run_worker  # the dissectors and Kafka (~0.5 s)

    tune_gc()
    return run_worker(settings)


def tune_gc() -> None:
    """Records are acyclic: collect cycles rarely, and never scan the start-up heap again."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
