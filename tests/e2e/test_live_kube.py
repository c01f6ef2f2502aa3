"""`wiretide tap POD_REGEX` with no cluster to ask is one line. Targeting real pods (network
namespaces) through a real API server: tests/wiretide/kube/test_tap_pods.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_wiretide

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.timeout(600),
]


def test_targeting_without_a_cluster_is_one_line(tmp_path: Path, wt_env: dict[str, str]) -> None:
    env = dict(wt_env, KUBECONFIG=str(tmp_path / "none"), HOME=str(tmp_path))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = run_wiretide(["tap", "web", "--for", "1"], env, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("wiretide: error: no Kubernetes cluster") and "\n" not in err, err
