"""Who an IP is (wiretide/kube/model.py, targeting.picture) over API-shaped objects: a pod
that has ended (Succeeded, Failed) keeps its podIP in the API until it is deleted, but
the node hands that IP to new pods, so an ended pod names no IP."""

from __future__ import annotations

from typing import Any

from wiretide.kube import model
from wiretide.kube.targeting import picture

IP = "10.244.1.7"


def api_pod(name: str, phase: str, ip: str, labels: dict[str, str] | None = None) -> dict:
    """A pod as GET /api/v1/namespaces/shop/pods/NAME returns it (the fields read)."""
    status: dict[str, Any] = {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}
    if phase in ("Succeeded", "Failed"):
        state = {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1}}
    else:
        state = {"running": {"startedAt": "2026-12-08T00:00:00Z"}}
    status["containerStatuses"] = [
        {"name": "app", "containerID": f"containerd://{name}", "state": state}
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "labels": labels or {"app": name.rsplit("-", 1)[0]},
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "app:1"}]},
        "status": status,
    }


def api_service(name: str, selector: dict[str, str], cluster_ip: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-svc-{name}"},
        "spec": {"selector": selector, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip]},
    }


def by_ip(pods: list[dict], services: list[dict] = ()) -> dict[str, tuple[str, str, str]]:
    named: dict[str, tuple[str, str, str]] = {}
    for e in model.endpoints(pods, services):
        assert e.ip not in named, f"two identities for {e.ip}"
        named[e.ip] = (e.kind, e.name, e.service)
    return named


def test_a_new_pod_on_an_ended_pods_ip_is_who_that_ip_is() -> None:
    services = [api_service("cart", {"app": "cart"}, "10.96.0.10")]
    for phase in ("Succeeded", "Failed"):
        ended = api_pod("migrate-x1", phase, IP, {"app": "migrate"})
        new = api_pod("cart-7", "Running", IP, {"app": "cart"})
        for pods in ([ended, new], [new, ended]):  # whatever order the API lists them
            assert by_ip(pods, services) == {
                "10.96.0.10": ("service", "cart", "cart"),
                IP: ("pod", "cart-7", "cart"),
            }


def test_an_ended_pod_alone_names_no_ip() -> None:
    """Its IP is left out like a deleted pod's: the publisher keeps the last identity for
    its linger (calls made just before still get named), then a tombstone."""
    done = api_pod("report-29", "Succeeded", IP)
    crashed = api_pod("worker-3", "Failed", "10.244.1.8")
    running = api_pod("web-1", "Running", "10.244.1.9")
    pending = api_pod("web-2", "Pending", "10.244.1.10")  # IP assigned, starting
    assert set(by_ip([done, crashed, running, pending])) == {"10.244.1.9", "10.244.1.10"}


def test_the_targeted_picture_has_the_new_pod_only() -> None:
    ended = api_pod("cart-6", "Failed", IP)
    new = api_pod("cart-7", "Running", IP)
    pic = picture([ended, new], [], model.PodSelector.parse("^cart-", ["shop"]))
    assert [p["metadata"]["name"] for p in pic.targets] == ["cart-7"]
    assert pic.target_ips == {IP}
    assert [(e.ip, e.name) for e in pic.endpoints] == [(IP, "cart-7")]
