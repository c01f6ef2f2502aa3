"""Kubernetes targeting without a cluster: no kubeconfig, a bad regex, container
processes by cgroup. Everything that talks to an API server runs against a real one in
tests/wiretide/kube/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wiretide.kube.client import KubeApi, NoCluster
from wiretide.kube.model import PodSelector


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
