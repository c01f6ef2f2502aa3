"""`wiretide agent`: a node agent, the live capture of `tap` (or a capture file's replay)
publishing to Kafka, no local storage."""

from __future__ import annotations

import argparse

from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide.cli import capture
from wiretide.cli.options import common, live_flags_used, live_options
from wiretide.progress import Progress

NAME = "agent"


def add_parser(sub: argparse._SubParsersAction) -> None:
    agent = sub.add_parser(
        NAME,
        help="run a node agent: capture live and publish segments to Kafka (no storage)",
        description="The node agent of a cluster deployment: live capture (and TLS with "
        "--tls) of this node, aimed at the pods POD_REGEX/-n/-A select, published to Kafka "
        "for the stream workers; runs until SIGTERM or --for.",
    )
    agent.add_argument(
        "--pcap", metavar="FILE", help="publish a capture file's segments instead, then exit"
    )
    live_options(agent)
    common(agent, store=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.pcap:
        used = live_flags_used(args)
        if used:
            raise WiretideError(f"{', '.join(used)}: for live capture only; leave out --pcap")
        return _agent_pcap(args, settings)
    return capture.capture_live(args, settings, store=False)


def _agent_pcap(args: argparse.Namespace, settings: Settings) -> int:
    """Publish a capture's segments to Kafka for the stream workers, then mark its end."""
    from producers.publisher import SegmentPublisher
    from schemas.runtime.topics import ensure_topics
    from wiretide.local import connect

    first, segments, stats = capture.open_capture(args.pcap)
    kafka_given = bool(settings.kafka)
    settings = connect(settings)
    ensure_topics(settings)
    publisher = SegmentPublisher(settings)
    capture.publish_capture(args.pcap, first, segments, stats, publisher, Progress(False))
    publisher.publish_end_of_capture()
    print(f"published {stats.segments} segments of {stats.packets} packets to {settings.kafka}")
    capture.say_left_running(kafka_given, settings)
    return 0
