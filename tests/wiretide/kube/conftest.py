"""Fixtures over a real Kubernetes control plane (tests/wiretide/kube/controlplane.py): one per
session, built by scripts/build-k8s.sh, a fresh namespace per test."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gobuild import build_go_peer
from tests.wiretide.kube.controlplane import IP_ANNOTATION, NODE, ApiError, ControlPlane, Rest
from wiretide.deploy import find_helm

needs_helm = pytest.mark.skipif(
    find_helm(os.environ.get("WIRETIDE_HELM")) is None, reason="no helm: run scripts/build-helm.sh"
)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    build_go_peer("k8s")  # cached: at once; in CI: waits for the background build
    plane = ControlPlane(tmp_path_factory.mktemp("k8s"))
    try:
        plane.start()
        took = ", ".join(f"{k} {v:.1f} s" for k, v in plane.startup_s.items())
        print(f"\nk8s control plane up: {took}", file=sys.stderr)
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def rest(control_plane: ControlPlane) -> Rest:
    return control_plane.rest


@pytest.fixture
def kubeconfig(control_plane: ControlPlane) -> str:
    return str(control_plane.kubeconfig)


def make_namespace(rest: Rest, prefix: str = "t") -> str:
    """A new namespace with its default ServiceAccount (made by the controller manager;
    pods are refused until it exists)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    rest.post("/api/v1/namespaces", {"metadata": {"name": name}})
    rest.wait(f"default ServiceAccount in {name}",
              lambda: rest.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"))  # fmt: skip
    return name


@pytest.fixture
def namespace(rest: Rest) -> Iterator[str]:
    name = make_namespace(rest)
    yield name
    try:
        rest.delete(f"/api/v1/namespaces/{name}", grace=None)
    except ApiError:
        pass


def pod(name: str, labels: dict[str, str], ip: str | None = None,
        node: str | None = NODE) -> dict[str, Any]:  # fmt: skip
    """A pod for kwok's node (with its IP from IP_ANNOTATION if given); node=None leaves
    it to the scheduler."""
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if ip:
        meta["annotations"] = {IP_ANNOTATION: ip}
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "example/app:1"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def create_pod(rest: Rest, ns: str, name: str, labels: dict[str, str],
               ip: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Create the pod and wait until kwok reports it Running with an IP."""
    rest.post(f"/api/v1/namespaces/{ns}/pods", pod(name, labels, ip))
    return wait_running(rest, ns, name)


def wait_running(rest: Rest, ns: str, name: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        got = rest.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        status = got.get("status", {})
        return got if status.get("phase") == "Running" and status.get("podIP") else None

    return rest.wait(f"pod {ns}/{name} Running", running)


def delete_pod(rest: Rest, ns: str, name: str) -> None:
    """Delete the pod and wait until it is gone (kwok finishes the graceful delete)."""
    rest.delete(f"/api/v1/namespaces/{ns}/pods/{name}", grace=0)

    def gone() -> bool:
        try:
            rest.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        except ApiError as ex:
            return ex.status == 404
        return False

    rest.wait(f"pod {ns}/{name} deleted", gone)


def service(name: str, selector: dict[str, str], port: int = 80,
            headless: bool = False) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"selector": selector, "ports": [{"port": port}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def sa_token(rest: Rest, ns: str, account: str) -> str:
    """A token for the ServiceAccount from the TokenRequest API, as a pod would mount."""
    got = rest.post(f"/api/v1/namespaces/{ns}/serviceaccounts/{account}/token",
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                     "spec": {"expirationSeconds": 3600}})  # fmt: skip
    return got["status"]["token"]


def user_rest(plane: ControlPlane, token: str) -> Rest:
    return Rest(plane.server, plane.pki, token=token)


def kubeconfig_for(plane: ControlPlane, name: str, token: str) -> Path:
    return plane.user_kubeconfig(name, token)
