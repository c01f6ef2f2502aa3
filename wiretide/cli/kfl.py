"""`wiretide kfl check|fields`: check a KFL filter, list the fields it knows."""

from __future__ import annotations

import argparse

from schemas.config import Settings

NAME = "kfl"
HELP = "check a KFL filter, list the fields it knows"


def add_arguments(kfl: argparse.ArgumentParser) -> None:
    kfl_sub = kfl.add_subparsers(dest="kfl_command", required=True, metavar="ACTION")
    check = kfl_sub.add_parser("check", help="validate a filter and show how it is read")
    check.add_argument("filter", metavar="KFL")
    kfl_sub.add_parser("fields", help="list the fields and aliases a filter can use")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from wiretide.kfl import check, describe_fields  # loads pyarrow (about a second)

    print(check(args.filter) if args.kfl_command == "check" else describe_fields())
    return 0
