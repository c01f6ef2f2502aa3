"""Every command's parser is built on every run: `wiretide --help` and `wiretide COMMAND
--help` load no Kafka client, store or Arrow (they wait until a command runs)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("confluent_kafka", "chdb", "pyarrow", "uvicorn", "fastapi", "kubernetes", "yaml")

_PROBE = f"""
import contextlib, io, sys
from wiretide.cli import COMMANDS, build_parser
for argv in (["--help"], *([command.NAME, "--help"] for command in COMMANDS)):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        build_parser().parse_args(argv)
print(" ".join(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_help_of_every_command_loads_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"loaded by the parsers: {done.stdout.strip()}"


def test_help_lists_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wiretide", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    listed = done.stdout.split("COMMAND\n", 1)[1].split("\n\n", 1)[0]
    names = [line.split()[0] for line in listed.splitlines() if not line.startswith(" " * 5)]
    assert names == [
        *("broker", "tap", "query", "kfl", "agent", "health", "worker", "sink", "export"),
        *("deploy", "undeploy", "hub", "map", "rules", "otel", "replay", "status"),
    ]
