"""Argument types and the options several commands share."""

from __future__ import annotations

import argparse


def common(p: argparse.ArgumentParser, kafka: bool = True, store: bool = True) -> None:
    p.add_argument(
        "--data", metavar="DIR", help="data dir (default: $WIRETIDE_DATA or ~/.wiretide)"
    )
    if kafka:
        p.add_argument(
            "--kafka",
            metavar="HOST:PORT",
            help="Kafka bootstrap (default: $WIRETIDE_KAFKA or a local broker)",
        )
    if store:
        p.add_argument(
            "--clickhouse",
            metavar="DSN",
            help="chdb:///path or http(s)://host:8123 (default: chDB in the data dir)",
        )


def kfl_filter(p: argparse.ArgumentParser, help: str) -> None:
    """The optional KFL filter positional of the commands that read stored calls."""
    p.add_argument("filter", nargs="?", default="", metavar="KFL", help=help)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def port(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def port_or_zero(text: str) -> int:
    return 0 if text == "0" else port(text)


def count(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def live_options(p: argparse.ArgumentParser) -> None:
    """Live capture and Kubernetes targeting options, shared by `tap` and `agent`."""
    p.add_argument(
        "pod_regex",
        nargs="?",
        metavar="POD_REGEX",
        help="capture the pods whose names match (needs a cluster: kubeconfig or in-cluster)",
    )
    k8s = p.add_argument_group("Kubernetes targeting")
    k8s.add_argument(
        "-n",
        "--namespace",
        action="append",
        metavar="NS",
        help="pods of this namespace (repeatable; default: default)",
    )
    k8s.add_argument("-A", "--all-namespaces", action="store_true", help="pods of every namespace")
    k8s.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config")
    live = p.add_argument_group("live capture (without --pcap)")
    live.add_argument(
        "-i",
        "--interface",
        action="append",
        metavar="NAME",
        help="capture on this interface (repeatable; default: every interface)",
    )
    live.add_argument(
        "--port", action="append", type=port, metavar="N", help="only this TCP/UDP port"
    )
    live.add_argument("--host", action="append", metavar="IP", help="only to or from this IP")
    live.add_argument(
        "--for",
        dest="duration",
        type=seconds,
        metavar="SECONDS",
        help="stop after this long (default: on Ctrl-C or SIGTERM)",
    )
    live.add_argument(
        "--netns",
        metavar="NAME",
        help="capture inside a network namespace: a name from ip netns, pid:PID or a path",
    )
    live.add_argument("--tls", action="store_true", help="also capture TLS plaintext (eBPF)")
    live.add_argument(
        "--buffer",
        type=positive,
        default=16,
        metavar="MiB",
        help="kernel ring size per interface (default 16)",
    )


# Flags that mean something to a live capture only (with --pcap they are refused).
LIVE_ONLY = {
    "interface": "--interface",
    "port": "--port",
    "host": "--host",
    "duration": "--for",
    "netns": "--netns",
    "tls": "--tls",
    "pod_regex": "POD_REGEX",
    "namespace": "-n",
    "all_namespaces": "-A",
}


def live_flags_used(args: argparse.Namespace) -> list[str]:
    return [flag for name, flag in LIVE_ONLY.items() if getattr(args, name, None)]
