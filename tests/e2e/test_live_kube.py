"""`wiretide tap POD_REGEX -n NS` against a cluster (root). Pods are network namespaces on
a host bridge with real servers and curl; the Kubernetes API is an HTTP server replaying
API responses (a PodList and a ServiceList built for this test with the namespaces' IPs,
in the API's JSON shapes; no API server can run here), reached by the real kubernetes
client through a kubeconfig. The tap captures only the selected pods' traffic, and the
stored calls carry pod, namespace and service names that KFL can filter on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_wiretide
from tests.e2e.test_live_tap import curl, finish_tap, start_tap
from tests.producers.test_afpacket import Lan, lan, start_server, stop_server  # noqa: F401
from tests.wiretide.test_kube import Replay, serve_replay

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.timeout(600),
]

PORT = 21790  # this module's share of 21700-21799


def _pod(ns: str, name: str, ip: str, app: str) -> dict:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                     "labels": {"app": app}, "resourceVersion": "5"},
        "spec": {"nodeName": "node-a", "containers": [{"name": app, "image": f"{app}:1"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }  # fmt: skip


@pytest.fixture
def kubeconfig(tmp_path: Path, lan: Lan):  # noqa: F811
    ips = {name: lan.add_pod(name) for name in ("web", "front", "lab")}
    pods = [
        _pod("shop", "web-7c9d-2xk4p", ips["web"], "web"),
        _pod("shop", "front-5b8f-9qzv1", ips["front"], "front"),
        _pod("lab", "lab-0", ips["lab"], "lab"),
    ]
    services = [{"metadata": {"name": "web", "namespace": "shop", "uid": "svc-web"},
                 "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                          "clusterIPs": ["10.96.0.10"], "ports": [{"port": PORT}]}}]  # fmt: skip
    Replay.routes = {
        "/api/v1/pods": json.dumps({"kind": "PodList", "apiVersion": "v1",
                                    "metadata": {"resourceVersion": "5"}, "items": pods}).encode(),
        "/api/v1/services": json.dumps({"kind": "ServiceList", "apiVersion": "v1",
                                        "metadata": {}, "items": services}).encode(),
    }  # fmt: skip
    Replay.watch, Replay.status, Replay.seen = b"", 200, []
    server, path = serve_replay(tmp_path)
    yield path, ips
    server.shutdown()


def test_pod_regex_and_namespace_capture_only_those_pods_with_their_names(
    kubeconfig: tuple[str, dict[str, str]],
    lan: Lan,  # noqa: F811
    wt_env: dict[str, str],
) -> None:
    path, ips = kubeconfig
    servers = [start_server(ips["web"], PORT, lan.netns("web")),
               start_server(ips["lab"], PORT, lan.netns("lab"))]  # fmt: skip
    try:
        tap = start_tap(["^(web|front)-", "-n", "shop", "--kubeconfig", path], wt_env)
        wanted = set()
        for i in range(3):
            body, port = curl(lan.netns("front"), f"http://{ips['web']}:{PORT}/cart/{i}")
            assert body == f"you asked for /cart/{i}"
            wanted.add(port)
        for i in range(3):  # lab is not selected: its calls must stay out
            curl(lan.netns("lab"), f"http://{ips['lab']}:{PORT}/lab/{i}")
        out = finish_tap(tap, interrupt=True)
    finally:
        for s in servers:
            stop_server(s)
    assert "stored 3 calls" in out, out
    calls = [json.loads(x) for x in run_wiretide(["query", "--json"], wt_env).stdout.splitlines()]
    assert {c["src"]["port"] for c in calls} == wanted
    for c in calls:
        assert c["src"]["name"] == "front-5b8f-9qzv1" and c["src"]["namespace"] == "shop"
        assert c["dst"]["pod"] == {"name": "web-7c9d-2xk4p", "namespace": "shop"}
        assert c["dst"]["service"] == {"name": "web", "namespace": "shop"}
    kfl_filter = 'dst.service.name == "web" && src.pod.namespace == "shop"'
    kfl = run_wiretide(["query", "--json", kfl_filter], wt_env)
    assert len(kfl.stdout.splitlines()) == 3
    none = run_wiretide(["query", "--json", 'dst.namespace == "lab"'], wt_env)
    assert none.stdout.strip() == ""


def test_targeting_without_a_cluster_is_one_line(tmp_path: Path, wt_env: dict[str, str]) -> None:
    env = dict(wt_env, KUBECONFIG=str(tmp_path / "none"), HOME=str(tmp_path))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = run_wiretide(["tap", "web", "--for", "1"], env, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("wiretide: error: no Kubernetes cluster") and "\n" not in err, err
