"""`wiretide agent`: a node agent, the live capture of `tap` (or a capture file's replay)
publishing to Kafka, no local storage."""

from __future__ import annotations

import argparse

from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide.cli import metrics_port
from wiretide.cli.options import common, live_flags_used, live_options

NAME = "agent"
HELP = "run a node agent: capture live and publish segments to Kafka (no storage)"
DESCRIPTION = (
    "The node agent of a cluster deployment: live capture (and TLS with "
    "--tls) of this node, aimed at the pods POD_REGEX/-n/-A select, published to Kafka "
    "for the stream workers; runs until SIGTERM or --for."
)


def add_arguments(agent: argparse.ArgumentParser) -> None:
    agent.add_argument(
        "--pcap", metavar="FILE", help="publish a capture file's segments instead, then exit"
    )
    live_options(agent)
    common(agent, store=False)
    metrics_port.add(agent)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.pcap:
        used = live_flags_used(args)
        if used:
            raise WiretideError(f"{', '.join(used)}: for live capture only; leave out --pcap")
    from wiretide.cli import capture  # producers, streams' rules and Kafka (~0.5 s)

    metrics_port.start(args, NAME, settings)

    if args.pcap:
        return capture.publish_pcap(args, settings)
    return capture.capture_live(args, settings, store=False)
