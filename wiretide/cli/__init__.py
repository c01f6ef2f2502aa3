"""`wiretide` command line: every failure is one line on stderr and exit code 2 (130 on
Ctrl-C); a reader closing stdout early (`wiretide query | head`) ends it quietly (141)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide.cli import (
    agent,
    broker,
    deploy,
    export,
    health,
    hub,
    kfl,
    otel,
    query,
    replay,
    rules,
    sink,
    status,
    tap,
    undeploy,
    worker,
)
from wiretide.cli import map as map_

EXIT_USAGE = 2
# Every command: a module with NAME, HELP, maybe DESCRIPTION, add_arguments(parser) and
# run(args, settings) -> int, in the order `wiretide --help` lists them.
COMMANDS = (broker, tap, query, kfl, agent, health, worker, sink, export, deploy, undeploy)
COMMANDS += (hub, map_, rules)
COMMANDS += (otel,)
COMMANDS += (replay,)
COMMANDS += (status,)
_BY_NAME = {command.NAME: command for command in COMMANDS}


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line too: what is wrong and where the help is."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


EXIT_PIPE = 141  # what a shell shows for a process ended by SIGPIPE (`query | head`)
EXIT_INTERRUPTED = 130


def run_reporting_failures(run: Callable[[], int]) -> int:
    """Run a command; every failure it raises becomes one line on stderr and an exit code
    (2, or 130 on Ctrl-C); a reader that closed stdout early ends it quietly."""
    from confluent_kafka import KafkaException  # only once a command runs: ~0.1 s

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
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wiretide", description="See every API call in your traffic.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        add_command(sub, command)
    return parser


def add_command(sub: argparse._SubParsersAction, command: ModuleType) -> None:
    description = getattr(command, "DESCRIPTION", None)
    parser = sub.add_parser(command.NAME, help=command.HELP, description=description)
    command.add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = _BY_NAME[args.command].run
    return run_reporting_failures(lambda: run(args, _settings(args)))


def _settings(args: argparse.Namespace) -> Settings:
    """Built once: the command's flags over the WIRETIDE_* environment over defaults."""
    flags = {name: getattr(args, name, None) for name in ("data", "kafka", "clickhouse")}
    return Settings.from_env(**flags)
