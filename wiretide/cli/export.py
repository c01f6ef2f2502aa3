"""`wiretide export --pcap OUT [KFL]`: the packets behind stored calls (wiretide.export)."""

from __future__ import annotations

import argparse

from schemas.config import Settings
from wiretide.cli.options import common, kfl_filter

NAME = "export"
HELP = "write the packets behind stored calls to a capture file"
DESCRIPTION = (
    "Find the calls a KFL filter takes and write their packets (read back "
    "from Kafka, which keeps them about an hour) to a pcap file, or pcapng for a "
    ".pcapng name."
)


def add_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument(
        "--pcap", required=True, metavar="OUT", help="the capture file to write (- for stdout)"
    )
    kfl_filter(export, "a KFL filter (default: every call)")
    export.add_argument("--since", metavar="TIME", help="calls from then on: 5m, 2h or an ISO time")
    export.add_argument("--until", metavar="TIME", help="calls up to then: 5m, 2h or an ISO time")
    common(export)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from wiretide.export import run_export  # loads pyarrow and the store (about a second)

    return run_export(args, settings)
