"""Targeting against a real API server: POD_REGEX/-n/-A, who every IP is, and following
pods, services and namespaces as they change, including a watch that expires (410)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

import pytest

from tests.wiretide.kube.conftest import (
    create_pod,
    delete_pod,
    make_namespace,
    pod,
    sa_token,
    service,
    wait_running,
)
from tests.wiretide.kube.controlplane import ControlPlane, Rest
from wiretide.kube.client import KubeApi, KubeError
from wiretide.kube.model import PodSelector
from wiretide.kube.targeting import Picture, Targeting

pytestmark = pytest.mark.timeout(600)


def test_pod_regex_and_namespace_pick_the_running_pods_and_their_ips(
    rest: Rest, kubeconfig: str
) -> None:
    shop, other = make_namespace(rest, "shop"), make_namespace(rest, "other")
    create_pod(rest, shop, "front-1", {"app": "front"}, ip="10.250.0.11")
    create_pod(rest, shop, "front-2", {"app": "front"}, ip="10.250.0.12")
    create_pod(rest, shop, "db-0", {"app": "db"}, ip="10.250.0.13")
    create_pod(rest, other, "front-9", {"app": "front"}, ip="10.250.0.19")
    # No node can take it (no scheduler match): it stays Pending, with no IP to capture.
    pending = pod("front-pending", {"app": "front"}, node=None)
    pending["spec"]["nodeSelector"] = {"no-such-node": "x"}
    rest.post(f"/api/v1/namespaces/{shop}/pods", pending)
    create_pod(rest, shop, "front-agent", {"app.kubernetes.io/name": "wiretide"}, "10.250.0.99")
    api = KubeApi(kubeconfig)

    pic = Targeting(api, PodSelector.parse("^front-", [shop])).refresh()
    assert sorted(p["metadata"]["name"] for p in pic.targets) == ["front-1", "front-2"]
    assert pic.target_ips == {"10.250.0.11", "10.250.0.12"}  # not Wiretide's own pod
    every = Targeting(api, PodSelector.parse("^front-", all_namespaces=True)).refresh()
    assert {"10.250.0.11", "10.250.0.12", "10.250.0.19"} <= every.target_ips
    assert "10.250.0.13" not in every.target_ips and "10.250.0.99" not in every.target_ips
    both = Targeting(api, PodSelector.parse("front-[19]$", [shop, other])).refresh()
    assert both.target_ips == {"10.250.0.11", "10.250.0.19"}
    create_pod(rest, "default", f"front-{shop}", {"app": "front"}, ip="10.250.0.20")
    try:  # no -n: the default namespace
        default = Targeting(api, PodSelector.parse("^front-")).refresh()
        assert default.target_ips == {"10.250.0.20"}
    finally:
        delete_pod(rest, "default", f"front-{shop}")


def test_every_ip_gets_its_identity_from_the_api(rest: Rest, kubeconfig: str) -> None:
    ns = make_namespace(rest, "ident")
    create_pod(rest, ns, "cart-1", {"app": "cart"}, ip="10.250.1.11")
    create_pod(rest, ns, "cart-db-0", {"app": "cart-db"}, ip="10.250.1.12")
    cart = rest.post(f"/api/v1/namespaces/{ns}/services", service("cart", {"app": "cart"}))
    rest.post(f"/api/v1/namespaces/{ns}/services",
              service("cart-db", {"app": "cart-db"}, headless=True))  # fmt: skip
    cluster_ip = cart["spec"]["clusterIP"]  # allocated by the API server
    host = pod("node-exporter", {"app": "ne"})
    host["spec"]["hostNetwork"] = True  # its IP is the node's: no identity of its own
    rest.post(f"/api/v1/namespaces/{ns}/pods", host)
    meshed = pod("cart-meshed", {"app": "cart"}, ip="10.250.1.13")
    meshed["spec"]["containers"].append({"name": "istio-proxy", "image": "istio/proxyv2:1"})
    rest.post(f"/api/v1/namespaces/{ns}/pods", meshed)
    wait_running(rest, ns, "node-exporter")
    wait_running(rest, ns, "cart-meshed")
    pic = Targeting(KubeApi(kubeconfig), PodSelector.parse(None, [ns])).refresh()
    by_ip = {e.ip: e for e in pic.endpoints}
    pod_side = by_ip["10.250.1.11"]
    assert (pod_side.kind, pod_side.name, pod_side.namespace, pod_side.service,
            pod_side.node) == ("pod", "cart-1", ns, "cart", "kwok-node-0")  # fmt: skip
    assert (by_ip[cluster_ip].kind, by_ip[cluster_ip].name) == ("service", "cart")
    assert by_ip["10.250.1.12"].service == "cart-db"  # headless: the pod side only
    assert "None" not in by_ip
    assert not any(e.name == "node-exporter" for e in pic.endpoints)
    assert pic.meshed == ((ns, "cart-meshed", "istio"),)


class Changes:
    """The pictures a followed Targeting reports, with a wait for one that fits."""

    def __init__(self, targeting: Targeting) -> None:
        self.targeting = targeting
        self.seen: list[Picture] = []
        targeting.follow(lambda old, new: self.seen.append(new))

    def until(self, what: str, ok: Callable[[Picture], bool], timeout_s: float = 90) -> Picture:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ok(self.targeting.current):
                return self.targeting.current
            time.sleep(0.1)
        raise AssertionError(f"{what}: not within {timeout_s:.0f} s; now "
                             f"{sorted(self.targeting.current.target_ips)}, "
                             f"error {self.targeting.error}")  # fmt: skip


def _service_of(pic: Picture, ip: str) -> str | None:
    return next((e.service for e in pic.endpoints if e.ip == ip), None)


def test_watch_follows_pods_recreated_with_new_ips_services_and_new_namespaces(
    rest: Rest, kubeconfig: str
) -> None:
    ns = make_namespace(rest, "churn")
    create_pod(rest, ns, "churn-web", {"app": "web"}, ip="10.250.2.11")
    targeting = Targeting(KubeApi(kubeconfig), PodSelector.parse("^churn-", all_namespaces=True))
    first = targeting.refresh()
    changes = Changes(targeting)
    try:
        assert "10.250.2.11" in first.target_ips
        create_pod(rest, ns, "churn-api", {"app": "api"}, ip="10.250.2.12")
        changes.until("new pod", lambda p: "10.250.2.12" in p.target_ips)
        delete_pod(rest, ns, "churn-web")
        changes.until("deleted pod", lambda p: "10.250.2.11" not in p.target_ips)
        create_pod(rest, ns, "churn-web", {"app": "web"}, ip="10.250.2.21")  # same name
        changes.until("re-created pod, new IP", lambda p: "10.250.2.21" in p.target_ips)
        # A Service made during the tap names its pods; a relabelled pod leaves it.
        rest.post(f"/api/v1/namespaces/{ns}/services", service("web", {"app": "web"}))
        changes.until("new service", lambda p: _service_of(p, "10.250.2.21") == "web")
        rest.patch(
            f"/api/v1/namespaces/{ns}/pods/churn-web", {"metadata": {"labels": {"app": "old"}}}
        )
        changes.until("pod left the service", lambda p: _service_of(p, "10.250.2.21") == "")
        later = make_namespace(rest, "later")  # a namespace added under -A
        create_pod(rest, later, "churn-late", {"app": "late"}, ip="10.250.2.31")
        pic = changes.until("new namespace's pod", lambda p: "10.250.2.31" in p.target_ips)
        late = next(e for e in pic.endpoints if e.ip == "10.250.2.31")
        assert (late.name, late.namespace) == ("churn-late", later)
        assert targeting.error is None, targeting.error
    finally:
        targeting.stop()


def _compact_etcd(etcd_url: str) -> int:
    """Compact etcd up to its current revision (etcd's JSON gateway): older versions are gone."""

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(etcd_url + path, json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    revision = int(post("/v3/kv/range", {"key": "Lw=="})["header"]["revision"])  # key "/"
    post("/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


def test_an_expired_watch_lists_again_and_misses_nothing(
    control_plane: ControlPlane, rest: Rest, kubeconfig: str
) -> None:
    ns = make_namespace(rest, "expire")
    create_pod(rest, ns, "exp-0", {"app": "exp"}, ip="10.250.3.10")
    targeting = Targeting(KubeApi(kubeconfig), PodSelector.parse("^exp-", [ns]))
    stale = targeting.refresh()
    # While nobody watches: changes, then etcd compacts past the listed version (the API
    # server watches pods from etcd here). The watch from it must get 410 Gone.
    create_pod(rest, ns, "exp-1", {"app": "exp"}, ip="10.250.3.11")
    for i in range(20):
        rest.patch(f"/api/v1/namespaces/{ns}/pods/exp-0",
                   {"metadata": {"annotations": {"bump": str(i)}}})  # fmt: skip
    delete_pod(rest, ns, "exp-0")
    _compact_etcd(control_plane.etcd_url)
    assert stale.target_ips == {"10.250.3.10"}
    changes = Changes(targeting)
    try:
        pic = changes.until("re-listed", lambda p: p.target_ips == {"10.250.3.11"})
        assert targeting.relists >= 1  # it was a 410 and a new list, not a lucky watch
        create_pod(rest, ns, "exp-2", {"app": "exp"}, ip="10.250.3.12")
        pic = changes.until("watch after the re-list", lambda p: "10.250.3.12" in p.target_ips)
        assert pic.target_ips == {"10.250.3.11", "10.250.3.12"}
        assert targeting.error is None, targeting.error
    finally:
        targeting.stop()


def test_a_refused_list_says_which_permission_is_missing(
    control_plane: ControlPlane, rest: Rest
) -> None:
    ns = make_namespace(rest, "cut")
    rest.post(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "narrow"}})
    # Pods everywhere, but no services: the role of a chart someone trimmed.
    rest.post(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "metadata": {"name": f"{ns}-narrow"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
            ],
        },
    )
    rest.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": f"{ns}-narrow"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": f"{ns}-narrow"},
        "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": ns}]})  # fmt: skip
    path = control_plane.user_kubeconfig("narrow", sa_token(rest, ns, "narrow"))
    api = KubeApi(str(path))
    deadline = time.monotonic() + 60
    while True:  # the authorizer sees the new binding within moments
        try:
            api.list_pods()
            break
        except KubeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with pytest.raises(KubeError) as info:
        Targeting(api, PodSelector.parse(None, all_namespaces=True)).refresh()
    message = str(info.value)
    assert "\n" not in message, message
    assert "403" in message and f"system:serviceaccount:{ns}:narrow" in message, message
    assert 'cannot list resource "services"' in message, message
