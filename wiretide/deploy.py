"""`wiretide deploy` and `wiretide undeploy`: install, upgrade or remove the Helm chart
(deploy/helm/wiretide) on the cluster of the current kubeconfig, through the helm binary.
Every failure — no helm, no kubeconfig, a bad values file, helm itself — is one line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from schemas.config import Settings
from schemas.errors import WiretideError

HELM_CACHE = Path("~/.cache/wiretide/helm/helm")
CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "wiretide"
_HELM_MISSING = (
    "helm not found: run scripts/build-helm.sh, put helm on PATH or set $WIRETIDE_HELM "
    "(nothing was deployed)"
)


class DeployError(WiretideError):
    """The chart could not be installed or removed."""


def find_helm(configured: str | None = None) -> str | None:
    """`configured` (Settings.helm: $WIRETIDE_HELM), then the binary scripts/build-helm.sh
    makes, then PATH."""
    for candidate in (configured, str(HELM_CACHE.expanduser())):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("helm")


def run_deploy(args: argparse.Namespace, settings: Settings) -> int:
    helm = require_helm(settings)
    chart = _chart(args.chart)
    values = [_values_file(path) for path in args.values or []]
    common = [args.release, str(chart), "--namespace", args.namespace]
    for path in values:
        common += ["--values", str(path)]
    for item in args.set_values or []:
        if "=" not in item:
            raise DeployError(
                f"--set {item!r}: expected KEY=VALUE, e.g. kafka.bootstrap=kafka:9092"
            )
        common += ["--set", item]
    if args.render:
        sys.stdout.write(_run(helm, ["template", *common], "helm template", None))
        return 0
    kubeconfig = _kubeconfig(args.kubeconfig)
    print(
        f"deploying {args.release} into namespace {args.namespace} with helm; waiting up to "
        f"{args.timeout} min for its pods...",
        file=sys.stderr,
        flush=True,
    )
    out = _run(
        helm,
        [
            "upgrade",
            "--install",
            *common,
            "--create-namespace",
            "--wait",
            "--timeout",
            f"{args.timeout}m",
            "--output",
            "json",
        ],
        "helm upgrade",
        kubeconfig,
    )
    try:
        release = json.loads(out)
    except ValueError:
        release = {}
    revision = release.get("version", "?")
    print(f"deployed {args.release} (revision {revision}) in namespace {args.namespace}")
    notes = release.get("info", {}).get("notes", "").strip()
    if notes:
        print(notes)
    return 0


def run_undeploy(args: argparse.Namespace, settings: Settings) -> int:
    helm = require_helm(settings)
    kubeconfig = _kubeconfig(args.kubeconfig)
    _run(
        helm,
        ["uninstall", args.release, "--namespace", args.namespace, "--wait"],
        "helm uninstall",
        kubeconfig,
    )
    print(f"removed {args.release} from namespace {args.namespace}")
    return 0


def require_helm(settings: Settings) -> str:
    helm = find_helm(settings.helm)
    if helm is None:
        raise DeployError(_HELM_MISSING)
    return helm


def _chart(explicit: str | None) -> Path:
    chart = Path(explicit).expanduser() if explicit else CHART
    if not (chart / "Chart.yaml").is_file():
        raise DeployError(
            f"no Helm chart at {chart}: run from a Wiretide checkout or pass --chart DIR"
        )
    return chart


def _values_file(path: str) -> Path:
    import yaml  # here: the CLI imports this module on every run

    file = Path(path).expanduser()
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as ex:
        raise DeployError(f"cannot read values file {path}: {ex.strerror}") from ex
    except yaml.YAMLError as ex:
        mark = getattr(ex, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(ex, "problem", None) or "not YAML"
        raise DeployError(f"values file {path}{where}: {problem}") from ex
    if data is not None and not isinstance(data, dict):
        raise DeployError(f"values file {path}: expected a mapping of keys to values")
    return file


def _kubeconfig(explicit: str | None) -> str | None:
    """The kubeconfig helm will use; None inside a pod (in-cluster credentials)."""
    if explicit:
        if not Path(explicit).expanduser().is_file():
            raise DeployError(f"no kubeconfig at {explicit}")
        return str(Path(explicit).expanduser())
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates = listed or [str(Path("~/.kube/config").expanduser())]
    if any(Path(p).expanduser().is_file() for p in candidates):
        return os.pathsep.join(candidates)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    raise DeployError(
        f"no kubeconfig ({', '.join(candidates)} not found): point --kubeconfig or "
        "$KUBECONFIG at your cluster's, or use --render to print the manifests"
    )


def _run(helm: str, argv: list[str], what: str, kubeconfig: str | None) -> str:
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    try:
        done = subprocess.run(
            [helm, *argv], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
        )
    except OSError as ex:
        raise DeployError(f"cannot run {helm}: {ex.strerror}") from ex
    if done.returncode != 0:
        raise DeployError(f"{what} failed: {_reason(done.stderr or done.stdout)}")
    return done.stdout


def _reason(text: str) -> str:
    """helm's own error in one line: its `Error:` line and what follows, squeezed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    picked = lines[errors[0] :] if errors else lines[-1:]
    reason = " ".join(picked).removeprefix("Error:").strip() or "no message"
    return reason if len(reason) <= 400 else reason[:397] + "..."
