"""The chart on a real API server: `wiretide deploy` (helm install --wait) until kwok's
node runs its pods, and the agent's ServiceAccount, with its own token, may read what
targeting needs and nothing else (RBAC as the API server enforces it)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import run_wiretide
from tests.wiretide.kube.conftest import needs_helm, pod, sa_token, user_rest
from tests.wiretide.kube.controlplane import ApiError, ControlPlane, Rest
from wiretide.deploy import find_helm
from wiretide.kube.client import KubeApi
from wiretide.kube.model import PodSelector
from wiretide.kube.targeting import Targeting

pytestmark = [pytest.mark.timeout(900), needs_helm]

AGENT = "wiretide-wiretide"  # the chart's ServiceAccount for release "wiretide"


@pytest.fixture
def deployed(control_plane: ControlPlane, tmp_path: Path):
    """The chart installed with `wiretide deploy` (helm upgrade --install --wait) into a
    new namespace; undeployed after."""
    ns = f"wiretide-{secrets.token_hex(3)}"
    helm = find_helm(os.environ.get("WIRETIDE_HELM"))  # found before HOME moves
    env = dict(os.environ, HOME=str(tmp_path), WIRETIDE_HELM=str(helm),
               KUBECONFIG=str(control_plane.kubeconfig))  # fmt: skip
    proc = run_wiretide(["deploy", "-n", ns, "--timeout", "4"], env, timeout=600, check=False)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"deployed wiretide (revision 1) in namespace {ns}" in proc.stdout, proc.stdout
        yield ns
    finally:
        run_wiretide(["undeploy", "-n", ns], env, timeout=300, check=False)


def _status(call) -> int:  # noqa: ANN001
    try:
        call()
    except ApiError as ex:
        return ex.status
    return 200


def test_helm_install_waits_for_ready_pods_and_the_agent_reads_only_what_it_needs(
    control_plane: ControlPlane, rest: Rest, deployed: str
) -> None:
    ns = deployed
    pods = rest.get(f"/api/v1/namespaces/{ns}/pods")["items"]
    kinds = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert {"agent", "hub"} <= kinds, kinds
    assert all(p["status"]["phase"] == "Running" for p in pods)
    agent = user_rest(control_plane, sa_token(rest, ns, AGENT))
    first = pods[0]["metadata"]["name"]
    allowed = [
        "/api/v1/pods", "/api/v1/services", "/api/v1/nodes", "/api/v1/namespaces",
        "/apis/discovery.k8s.io/v1/endpointslices", f"/api/v1/namespaces/{ns}/pods",
        "/api/v1/nodes/kwok-node-0", f"/api/v1/namespaces/{ns}",
        "/api/v1/pods?watch=true&timeoutSeconds=1",
    ]  # fmt: skip
    for path in allowed:
        assert _status(lambda p=path: agent.get(p)) == 200, path
    refused = {
        "list secrets": lambda: agent.get("/api/v1/secrets"),
        "read its own namespace's secrets": lambda: agent.get(f"/api/v1/namespaces/{ns}/secrets"),
        "list configmaps": lambda: agent.get("/api/v1/configmaps"),
        "create a pod": lambda: agent.post(f"/api/v1/namespaces/{ns}/pods", pod("x", {})),
        "delete a pod": lambda: agent.delete(f"/api/v1/namespaces/{ns}/pods/{first}"),
        "label a node": lambda: agent.patch("/api/v1/nodes/kwok-node-0",
                                            {"metadata": {"labels": {"x": "y"}}}),
        "create a namespace": lambda: agent.post("/api/v1/namespaces", {"metadata": {"name": "x"}}),
    }  # fmt: skip
    for what, call in refused.items():
        assert _status(call) == 403, what
    # Wiretide's targeting runs on the agent's credentials and leaves out its own pods.
    config = control_plane.user_kubeconfig("agent", sa_token(rest, ns, AGENT))
    pic = Targeting(KubeApi(str(config)), PodSelector.parse(None, all_namespaces=True)).refresh()
    assert not any(t["metadata"]["namespace"] == ns for t in pic.targets)
    assert any(e.namespace == ns and e.kind == "pod" for e in pic.endpoints)
