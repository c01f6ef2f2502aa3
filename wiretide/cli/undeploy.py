"""`wiretide undeploy`: remove the Helm release (wiretide.deploy)."""

from __future__ import annotations

import argparse

from wiretide.cli.deploy import target_options
from wiretide.deploy import run_undeploy

NAME = "undeploy"


def add_parser(sub: argparse._SubParsersAction) -> None:
    undeploy = sub.add_parser(
        NAME,
        help="remove Wiretide from a Kubernetes cluster (with helm)",
        description="Uninstall the Wiretide release and wait until its objects are gone.",
    )
    target_options(undeploy)


run = run_undeploy
