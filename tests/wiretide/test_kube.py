"""Kubernetes targeting without a cluster: no kubeconfig, a bad regex, container
processes by cgroup. Everything that talks to an API server runs against a real one in
tests/wiretide/kube/. `Replay` (an HTTP server answering with API-shaped JSON) stays only for
tests/e2e/test_live_kube.py, which imports it.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from wiretide.kube.client import KubeApi, NoCluster
from wiretide.kube.model import PodSelector


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


def test_no_kubeconfig_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(NoCluster, match="KUBECONFIG"):
        KubeApi()


def test_bad_pod_regex_is_a_clear_error():
    with pytest.raises(ValueError, match="bad pod regex"):
        PodSelector.parse("front(")


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
