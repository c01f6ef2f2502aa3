"""What the deploy tests share: where the chart and helm are, which commands the CLI
has, and which WIRETIDE_* settings the code reads."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from functools import cache
from pathlib import Path

from wiretide.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "wiretide"
PACKAGES = ("wiretide", "producers", "streams", "sinks", "schemas")
HELM_CACHE = Path.home() / ".cache" / "wiretide" / "helm" / "helm"


def find_helm() -> str | None:
    """$WIRETIDE_HELM, then the binary scripts/build-helm.sh makes, then PATH."""
    for candidate in (os.environ.get("WIRETIDE_HELM"), str(HELM_CACHE)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("helm")


def cli_error(argv: list[str]) -> str | None:
    """None when `wiretide ARGV...` parses with the real CLI parser, else argparse's error."""
    if not argv or argv[0] != "wiretide":
        return f"not a wiretide command: {argv!r}"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        if exc.code:
            return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue() else "exit"
    return None


@cache
def env_names_read() -> frozenset[str]:
    """Every WIRETIDE_* name spelled out in the package sources."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"WIRETIDE_[A-Z0-9_]+", path.read_text()))
    return frozenset(names)
