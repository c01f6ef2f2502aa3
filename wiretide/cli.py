"""`wiretide` command line: every failure is one line on stderr and exit code 2 (130 on
Ctrl-C); a reader closing stdout early (`wiretide query | head`) ends it quietly (141)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from schemas.errors import WiretideError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line too: what is wrong and where the help is."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _common(p: argparse.ArgumentParser, kafka: bool = True, store: bool = True) -> None:
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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text!r}")
    return int(text)


def _broker_port(text: str) -> int:
    from schemas.errors import BrokerError
    from wiretide.broker import checked_port

    try:
        return checked_port(text, "port")
    except BrokerError as ex:
        raise argparse.ArgumentTypeError(str(ex).removeprefix("port ")) from None


def _port_or_zero(text: str) -> int:
    return 0 if text == "0" else _port(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _live_options(p: argparse.ArgumentParser) -> None:
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
        "--port", action="append", type=_port, metavar="N", help="only this TCP/UDP port"
    )
    live.add_argument("--host", action="append", metavar="IP", help="only to or from this IP")
    live.add_argument(
        "--for",
        dest="duration",
        type=_seconds,
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
        type=_positive,
        default=16,
        metavar="MiB",
        help="kernel ring size per interface (default 16)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wiretide", description="See every API call in your traffic.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    broker = sub.add_parser("broker", help="run the local one-node Kafka broker")
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument(
        "--port",
        type=_broker_port,
        help="listener port (default: where this data dir's broker runs or last ran, else "
        "9092 or a free one); the controller takes the next port",
    )
    _common(broker, kafka=False, store=False)

    tap = sub.add_parser(
        "tap",
        help="capture traffic and store its API calls",
        description="Capture live (AF_PACKET, needs root or CAP_NET_RAW) until --for runs "
        "out or Ctrl-C, or replay a capture file with --pcap; then store every call.",
    )
    tap.add_argument("--pcap", metavar="FILE", help="replay a pcap/pcapng capture")
    _live_options(tap)
    tap.add_argument("--redaction", metavar="FILE", help="YAML file of fields/patterns to redact")
    tap.add_argument(
        "--rules", metavar="FILE", help="YAML traffic validation rules (see: wiretide rules check)"
    )
    tap.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="stream worker processes (default: one per core)",
    )
    tap.add_argument("--quiet", action="store_true", help="no progress display")
    ui = tap.add_argument_group("web UI")
    ui.add_argument(
        "--ui-port",
        type=_port_or_zero,
        default=8899,
        metavar="N",
        help="serve the UI on 127.0.0.1:N while tapping (default 8899; 0 picks a free one)",
    )
    ui.add_argument("--no-ui", action="store_true", help="do not serve the UI")
    ui.add_argument(
        "--keep-ui", action="store_true", help="keep serving the UI after the tap, until Ctrl-C"
    )
    from wiretide.deploy_tap import add_tap_options

    add_tap_options(tap)
    _common(tap)

    query = sub.add_parser("query", help="print stored calls, newest last")
    query.add_argument(
        "filter",
        nargs="?",
        default="",
        metavar="KFL",
        help="a KFL filter, e.g. 'http and response.status >= 500' (default: every call)",
    )
    query.add_argument("--json", action="store_true", help="one JSON object per line")
    query.add_argument("--limit", type=_count, metavar="N", help="print only the newest N calls")
    _common(query, kafka=False)

    kfl = sub.add_parser("kfl", help="check a KFL filter, list the fields it knows")
    kfl_sub = kfl.add_subparsers(dest="kfl_command", required=True, metavar="ACTION")
    check = kfl_sub.add_parser("check", help="validate a filter and show how it is read")
    check.add_argument("filter", metavar="KFL")
    kfl_sub.add_parser("fields", help="list the fields and aliases a filter can use")

    agent = sub.add_parser(
        "agent",
        help="run a node agent: capture live and publish segments to Kafka (no storage)",
        description="The node agent of a cluster deployment: live capture (and TLS with "
        "--tls) of this node, aimed at the pods POD_REGEX/-n/-A select, published to Kafka "
        "for the stream workers; runs until SIGTERM or --for.",
    )
    agent.add_argument(
        "--pcap", metavar="FILE", help="publish a capture file's segments instead, then exit"
    )
    _live_options(agent)
    _common(agent, store=False)

    health = sub.add_parser("health", help="exit 0 when a local process is alive (a probe)")
    health.add_argument("component", choices=["agent", "worker", "sink"])
    health.add_argument(
        "--max-age",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="the heartbeat may be this old (default 30)",
    )
    _common(health, kafka=False, store=False)

    worker = sub.add_parser("worker", help="run a stream worker in the foreground")
    _common(worker, store=False)
    sink = sub.add_parser("sink", help="run a ClickHouse writer in the foreground")
    sink.add_argument(
        "--serve",
        metavar="HOST:PORT",
        help="also serve the hub API/UI from this process, on the same open store",
    )
    _common(sink)

    export = sub.add_parser(
        "export",
        help="write the packets behind stored calls to a capture file",
        description="Find the calls a KFL filter takes and write their packets (read back "
        "from Kafka, which keeps them about an hour) to a pcap file, or pcapng for a "
        ".pcapng name.",
    )
    export.add_argument(
        "--pcap", required=True, metavar="OUT", help="the capture file to write (- for stdout)"
    )
    export.add_argument(
        "filter", nargs="?", default="", metavar="KFL", help="a KFL filter (default: every call)"
    )
    export.add_argument("--since", metavar="TIME", help="calls from then on: 5m, 2h or an ISO time")
    export.add_argument("--until", metavar="TIME", help="calls up to then: 5m, 2h or an ISO time")
    _common(export)

    from wiretide.deploy import add_parsers as add_deploy_parsers
    from wiretide.hub.cli import add_parser as add_hub_parser
    from wiretide.map_cli import add_parser as add_map_parser
    from wiretide.rules_cli import add_parser as add_rules_parser

    add_deploy_parsers(sub)
    add_hub_parser(sub)
    add_map_parser(sub)
    add_rules_parser(sub)
    return parser


EXIT_PIPE = 141  # what a shell shows for a process ended by SIGPIPE (`query | head`)
EXIT_INTERRUPTED = 130


def run_reporting_failures(run: Callable[[], int]) -> int:
    """Run a command; every failure it raises becomes one line on stderr and an exit code
    (2, or 130 on Ctrl-C); a reader that closed stdout early ends it quietly."""
    from confluent_kafka import KafkaException

    try:
        code = run()
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_PIPE
    except WiretideError as exc:
        _say(str(exc))
    except KafkaException as exc:
        _say(
            f"Kafka: {exc.args[0].str() if exc.args else exc}; "
            "check the broker (wiretide broker status) and retry"
        )
    except OSError as exc:
        _say(os_error_text(exc))
    except KeyboardInterrupt:
        print("wiretide: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USAGE


def os_error_text(exc: OSError) -> str:
    """`No such file or directory: /x` rather than `[Errno 2] ...`, one line."""
    what = exc.strerror or str(exc) or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    return f"{what}: {where}" if where else what


def _say(message: str) -> None:
    try:
        print(f"wiretide: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    except OSError:
        pass  # stderr is gone too: the exit code is all that is left


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from wiretide import commands

    return run_reporting_failures(lambda: getattr(commands, f"run_{args.command}")(args))


if __name__ == "__main__":
    raise SystemExit(main())
