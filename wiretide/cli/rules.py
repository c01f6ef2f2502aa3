"""`wiretide rules check FILE`: read a traffic validation rules file and say what is wrong.

Prints "ok: N rules" (and the rules) and exits 0, or prints every problem as one
`file:line:column: what` line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from schemas.config import Settings

if TYPE_CHECKING:
    from streams.rules import Rule

NAME = "rules"
EXIT_USAGE = 2
HELP = "check a traffic validation rules file"


def add_arguments(rules: argparse.ArgumentParser) -> None:
    actions = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate a rules file; every problem with its line and column",
        description="Read a rules file (YAML: rules with name, type latency|json|header, "
        "path, service, latency, key, value) the way `wiretide tap --rules` does.",
    )
    check.add_argument("file", metavar="FILE")


def describe(rule: Rule) -> str:
    d = rule.describe()
    if rule.kind == "latency":
        what = f"latency <= {d['latency_ms']:g}ms"
    else:
        value = f" ~ /{d['value']}/" if d["value"] else " present"
        what = f"{rule.kind} {d['key']}{value}"
    scope = " ".join(f'{k} "{d[k]}"' for k in ("path", "service", "method") if d[k])
    return f"  {rule.name}: {what}" + (f" where {scope}" if scope else " on every call")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.rules import RulesError, load_rules  # loads YAML and the records (~0.1 s)

    try:
        rules = load_rules(args.file)
    except RulesError as ex:
        for problem in ex.problems:
            print(f"wiretide: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(f"ok: {len(rules)} rule{'' if len(rules) == 1 else 's'}")
    for rule in rules:
        print(describe(rule))
    return 0
