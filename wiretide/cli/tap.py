"""`wiretide tap`: capture live or replay a capture file, and store every call; with
--deploy, the same onto a cluster (wiretide.deploy_tap)."""

from __future__ import annotations

import argparse

from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide.cli.options import common, live_flags_used, live_options, port_or_zero, positive

NAME = "tap"
HELP = "capture traffic and store its API calls"
DESCRIPTION = (
    "Capture live (AF_PACKET, needs root or CAP_NET_RAW) until --for runs "
    "out or Ctrl-C, or replay a capture file with --pcap; then store every call."
)


def add_arguments(tap: argparse.ArgumentParser) -> None:
    tap.add_argument("--pcap", metavar="FILE", help="replay a pcap/pcapng capture")
    live_options(tap)
    tap.add_argument("--redaction", metavar="FILE", help="YAML file of fields/patterns to redact")
    tap.add_argument(
        "--rules", metavar="FILE", help="YAML traffic validation rules (see: wiretide rules check)"
    )
    tap.add_argument(
        "--workers",
        type=positive,
        default=None,
        metavar="N",
        help="stream worker processes (default: one per core)",
    )
    tap.add_argument("--quiet", action="store_true", help="no progress display")
    ui = tap.add_argument_group("web UI")
    ui.add_argument(
        "--ui-port",
        type=port_or_zero,
        default=8899,
        metavar="N",
        help="serve the UI on 127.0.0.1:N while tapping (default 8899; 0 picks a free one)",
    )
    ui.add_argument("--no-ui", action="store_true", help="do not serve the UI")
    ui.add_argument(
        "--keep-ui", action="store_true", help="keep serving the UI after the tap, until Ctrl-C"
    )
    _deploy_options(tap)
    common(tap)


def _deploy_options(tap: argparse.ArgumentParser) -> None:
    group = tap.add_argument_group("cluster deployment (--deploy)")
    group.add_argument(
        "--deploy",
        action="store_true",
        help="deploy Wiretide with helm onto the kubeconfig's cluster, capturing the pods "
        "POD_REGEX/-n/-A select, and forward its hub to 127.0.0.1:--ui-port",
    )
    group.add_argument(
        "--namespace-of-wiretide",
        default="wiretide",
        metavar="NS",
        help="the namespace Wiretide is deployed into (default wiretide)",
    )
    group.add_argument(
        "--undeploy-on-exit",
        action="store_true",
        help="with --deploy: remove Wiretide from the cluster on Ctrl-C",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.deploy:  # onto a cluster with helm, its hub forwarded here
        from wiretide.deploy_tap import run_tap_deploy  # loads YAML and the Kubernetes client

        return run_tap_deploy(args, settings)
    if args.pcap:
        used = live_flags_used(args)
        if used:
            raise WiretideError(
                f"{', '.join(used)}: for live capture only; leave out --pcap to capture live"
            )
    from wiretide.cli import capture  # producers, streams' rules and Kafka (~0.5 s)
    from wiretide.cli.metrics_port import share_with_children

    capture.check_inputs(args, settings)  # a bad rules file: one line, the data dir untouched
    share_with_children(settings.data)  # the tap's hub serves its processes' counters

    return capture.tap_pcap(args, settings) if args.pcap else capture.capture_live(args, settings)
