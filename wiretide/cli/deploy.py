"""`wiretide deploy`: install or upgrade the Helm chart (wiretide.deploy)."""

from __future__ import annotations

import argparse

from wiretide.deploy import CHART, run_deploy

NAME = "deploy"
HELP = "install or upgrade Wiretide on a Kubernetes cluster (with helm)"
DESCRIPTION = (
    "Install or upgrade the Wiretide Helm chart on the cluster of the current "
    "kubeconfig and wait until its pods are ready. --render prints the manifests instead "
    "and needs no cluster."
)


def add_arguments(deploy: argparse.ArgumentParser) -> None:
    target_options(deploy)
    deploy.add_argument(
        "-f",
        "--values",
        action="append",
        metavar="FILE",
        help="a YAML values file (repeatable; see deploy/helm/wiretide/README.md)",
    )
    deploy.add_argument(
        "--set",
        action="append",
        dest="set_values",
        metavar="KEY=VALUE",
        help="one value, e.g. kafka.bootstrap=kafka:9092 (repeatable)",
    )
    deploy.add_argument("--chart", metavar="DIR", help=f"the chart (default: {CHART})")
    deploy.add_argument(
        "--timeout",
        type=_minutes,
        default=10,
        metavar="MINUTES",
        help="how long to wait for the pods to be ready (default 10)",
    )
    deploy.add_argument(
        "--render", action="store_true", help="print the manifests, change nothing (no cluster)"
    )


def target_options(p: argparse.ArgumentParser) -> None:
    """Where the release goes: shared with `undeploy`."""
    p.add_argument(
        "-n", "--namespace", default="wiretide", help="Kubernetes namespace (default wiretide)"
    )
    p.add_argument("--release", default="wiretide", help="Helm release name (default wiretide)")
    p.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config")


def _minutes(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of minutes, got {text!r}")
    return value


run = run_deploy
