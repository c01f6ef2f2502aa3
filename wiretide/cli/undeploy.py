"""`wiretide undeploy`: remove the Helm release (wiretide.deploy)."""

from __future__ import annotations

import argparse

from wiretide.cli.deploy import target_options
from wiretide.deploy import run_undeploy

NAME = "undeploy"
HELP = "remove Wiretide from a Kubernetes cluster (with helm)"
DESCRIPTION = "Uninstall the Wiretide release and wait until its objects are gone."


def add_arguments(undeploy: argparse.ArgumentParser) -> None:
    target_options(undeploy)


run = run_undeploy
