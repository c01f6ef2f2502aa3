"""`wiretide worker`: a stream worker in the foreground (streams.app)."""

from __future__ import annotations

import argparse
import gc

from schemas.config import Settings
from wiretide.cli import metrics_port
from wiretide.cli.options import common

NAME = "worker"
HELP = "run a stream worker in the foreground"


def add_arguments(worker: argparse.ArgumentParser) -> None:
    common(worker, store=False)
    metrics_port.add(worker)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import run as run_worker  # the dissectors and Kafka (~0.5 s)
    from wiretide.local import connect  # (a tap's broker may still be starting: imported first)

    settings = connect(settings)

    metrics_port.start(args, NAME, settings)
    tune_gc()
    return run_worker(settings)


def tune_gc() -> None:
    """Records are acyclic: collect cycles rarely, and never scan the start-up heap again."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
