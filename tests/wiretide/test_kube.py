"""Kubernetes targeting against an HTTP server that replays API responses.

No API server can run on this machine, so these tests serve the responses of the
Kubernetes API (`tests/golden/kube/`: a PodList, a ServiceList and a pod watch stream,
in the API's JSON shapes, written for these tests rather than recorded from a cluster)
from a local HTTP server, and point a kubeconfig at it: the code under test is the real
kubernetes client making real HTTP requests.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from schemas.config import Settings
from schemas.records import ACK, PSH, Segment
from streams.dissect.registry import default_registry
from streams.enrich import Directory
from streams.pipeline import Pipeline
from streams.redact import RedactionPolicy
from tests.conftest import GOLDEN
from wiretide.kube.client import KubeApi, KubeError, NoCluster
from wiretide.kube.model import PodSelector
from wiretide.kube.targeting import Targeting

KUBE = GOLDEN / "kube"


class Replay(BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}
    watch: bytes = b""
    status = 200
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        self.seen.append(self.path)
        if self.status != 200:
            body = json.dumps({"kind": "Status", "code": self.status, "reason": "Forbidden",
                               "message": "pods is forbidden"}).encode()  # fmt: skip
            self.send_response(self.status)
        elif parse_qs(url.query).get("watch") == ["true"]:
            body = self.watch
            self.watch = b""  # one stream of events; later watches see none
            type(self).watch = b""
            self.send_response(200)
        elif url.path in self.routes:
            body = self.routes[url.path]
            self.send_response(200)
        else:
            body = b'{"kind":"Status","code":404}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_replay(tmp_path: Path) -> tuple[ThreadingHTTPServer, str]:
    """Start the replay server (with what `Replay` holds now) and write a kubeconfig that
    points the kubernetes client at it; (server, kubeconfig path)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: replay
  cluster: {{server: "http://127.0.0.1:{server.server_address[1]}"}}
users:
- name: tester
  user: {{token: "t0ken"}}
contexts:
- name: replay
  context: {{cluster: replay, user: tester}}
current-context: replay
"""
    )
    return server, str(kubeconfig)


@pytest.fixture
def api_server(tmp_path: Path):
    Replay.routes = {
        "/api/v1/pods": (KUBE / "pods.json").read_bytes(),
        "/api/v1/services": (KUBE / "services.json").read_bytes(),
    }
    Replay.watch = (KUBE / "watch-pods.jsonl").read_bytes()
    Replay.status = 200
    Replay.seen = []
    server, kubeconfig = serve_replay(tmp_path)
    yield kubeconfig
    server.shutdown()


def test_pod_regex_and_namespace_pick_the_running_pods_and_their_ips(api_server):
    targeting = Targeting(KubeApi(api_server), PodSelector.parse("^front-7d9c", ["shop"]))
    pic = targeting.refresh()
    assert sorted(p["metadata"]["name"] for p in pic.targets) == [
        "front-7d9c4b-k8s7d",
        "front-7d9c4b-x2x9q",
    ]  # not front-db-0 (no match), not front-legacy (namespace), not the pending one
    assert pic.target_ips == {"10.244.0.11", "10.244.1.12"}


def test_all_namespaces_and_default_namespace(api_server):
    api = KubeApi(api_server)
    every = Targeting(api, PodSelector.parse("front", all_namespaces=True)).refresh()
    assert "10.244.0.41" in every.target_ips and "10.244.0.31" in every.target_ips
    anything = Targeting(api, PodSelector.parse(".*", all_namespaces=True)).refresh()
    assert "10.244.0.99" not in anything.target_ips  # Wiretide's own agent pod
    default = Targeting(api, PodSelector.parse("front")).refresh()
    assert default.target_ips == {"10.244.0.41"}


def test_every_ip_gets_its_identity_for_enrichment(api_server):
    pic = Targeting(KubeApi(api_server), PodSelector.parse(None, ["shop"])).refresh()
    by_ip = {e.ip: e for e in pic.endpoints}
    front = by_ip["10.244.1.12"]
    assert (front.kind, front.name, front.namespace, front.service, front.node) == (
        "pod", "front-7d9c4b-k8s7d", "shop", "front", "node-b"
    )  # fmt: skip
    assert by_ip["10.96.10.2"].kind == "service" and by_ip["10.96.10.2"].name == "catalogue"
    assert by_ip["10.244.0.31"].service == "front-db"  # headless service: pod side only
    assert "None" not in by_ip and "192.168.49.2" not in by_ip  # headless, hostNetwork
    assert pic.meshed == (("shop", "catalogue-5f6d8-abcde", "istio"),)


def test_watch_adds_and_removes_pods_live(api_server):
    targeting = Targeting(KubeApi(api_server), PodSelector.parse("^front-7d9c", ["shop"]))
    first = targeting.refresh()
    changes = []
    targeting.follow(lambda old, new: changes.append(new))
    deadline = time.monotonic() + 20
    while len(changes) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    targeting.stop()
    assert first.target_ips == {"10.244.0.11", "10.244.1.12"}
    assert changes[0].target_ips == {"10.244.0.11", "10.244.1.12", "10.244.1.13"}
    assert changes[1].target_ips == {"10.244.0.11", "10.244.1.13"}
    assert any("watch=true" in path and "resourceVersion=1000" in path for path in Replay.seen)


def test_refused_request_is_one_line(api_server):
    Replay.status = 403
    with pytest.raises(KubeError) as info:
        KubeApi(api_server).list_pods()
    assert "403" in str(info.value) and "\n" not in str(info.value)


def test_no_kubeconfig_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(NoCluster, match="KUBECONFIG"):
        KubeApi()


def test_bad_pod_regex_is_a_clear_error():
    with pytest.raises(ValueError, match="bad pod regex"):
        PodSelector.parse("front(")


def test_calls_between_pods_carry_pod_and_service_names(api_server):
    pic = Targeting(KubeApi(api_server), PodSelector.parse(None, ["shop"])).refresh()
    directory = Directory()
    for endpoint in pic.endpoints:
        directory.update(endpoint)
    pipe = Pipeline(default_registry(), RedactionPolicy.default(), directory=directory)
    client, server = ("10.244.0.11", 40000), ("10.96.10.2", 80)
    request = b"GET /catalogue HTTP/1.1\r\nHost: catalogue\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
    segs = [
        Segment(1, *client, *server, 1, 0, ACK | PSH, request),
        Segment(2, *server, *client, 9, 0, ACK | PSH, response),
    ]
    out = pipe.process(0, segs)
    [call] = out.calls
    assert (call.src_pod, call.src_namespace, call.src_service) == (
        "front-7d9c4b-x2x9q", "shop", "front"
    )  # fmt: skip
    assert (call.dst_pod, call.dst_namespace, call.dst_service) == ("", "shop", "catalogue")


def test_endpoints_travel_through_the_compacted_topic_to_every_worker(api_server, kafka):
    """Real broker: the tap's publisher and a worker's follower agree on who is who,
    including removals (tombstones)."""
    import uuid

    from confluent_kafka.admin import AdminClient, NewTopic

    from streams.endpoints import EndpointFollower
    from wiretide.kube.publish import EndpointPublisher

    topic = f"t{uuid.uuid4().hex[:8]}-endpoints"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})])[
        topic
    ].result()
    targeting = Targeting(KubeApi(api_server), PodSelector.parse(None, all_namespaces=True))
    publisher = EndpointPublisher(Settings(kafka=kafka), topic)
    first = targeting.refresh()
    assert publisher.sync(first.endpoints) == len(first.endpoints)
    assert publisher.sync(first.endpoints) == 0  # nothing changed, nothing sent
    directory = Directory()
    follower = EndpointFollower(Settings(kafka=kafka), topic, directory)
    follower.start()
    try:
        deadline = time.monotonic() + 30
        while len(directory) < len(first.endpoints) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert directory.get("10.244.1.12").name == "front-7d9c4b-k8s7d"
        pod = json.loads((KUBE / "watch-pods.jsonl").read_text().splitlines()[1])["object"]
        publisher.sync(targeting.apply("DELETED", pod).endpoints)
        while directory.get("10.244.1.12") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert directory.get("10.244.1.12") is None
        assert directory.get("10.96.10.2").kind == "service"
    finally:
        follower.stop()
        follower.join(5)


def test_processes_of_a_pods_containers_are_found_by_cgroup(tmp_path):
    """A real process moved into a cgroup named after a container id (as a container
    runtime does) is found for that pod on this node, and only there."""
    import subprocess

    from wiretide.kube.pids import local_pids

    root = Path("/sys/fs/cgroup/pids")
    if not root.is_dir() or not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup (pids controller) to stand in for a container")
    cid = "0f" * 32
    group = root / f"wt-test-{cid}"
    group.mkdir()
    proc = subprocess.Popen(["sleep", "60"])
    try:
        (group / "cgroup.procs").write_text(str(proc.pid))
        pod = {
            "spec": {"nodeName": "node-a"},
            "status": {"containerStatuses": [
                {"containerID": f"containerd://{cid}", "state": {"running": {}}}]},
        }  # fmt: skip
        assert local_pids([pod], "node-a") == [proc.pid]
        assert local_pids([pod], "node-b") == []
    finally:
        proc.kill()
        proc.wait()
        group.rmdir()
