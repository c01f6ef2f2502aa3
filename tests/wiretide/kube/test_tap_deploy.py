"""`wiretide tap --deploy` end to end on a real API server: helm installs the chart and
waits for its pods (the controller manager, scheduler and kwok run them), the tap finds
the ready hub pod and its token Secret, and its UI port is forwarded through the API
server's pod port-forward to kwok, which relays it to a local process standing in for
the hub container. --undeploy-on-exit removes the release on Ctrl-C."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, _free_port_pair
from tests.wiretide.kube.conftest import needs_helm
from tests.wiretide.kube.controlplane import ControlPlane, Rest
from wiretide.deploy import find_helm
from wiretide.deploy_tap import hub_token_secret

pytestmark = [pytest.mark.timeout(900), needs_helm]


@pytest.fixture
def hub_stand_in(control_plane: ControlPlane, tmp_path: Path):
    """An HTTP server on the port kwok forwards every pod's :8899 to."""
    site = tmp_path / "site"
    site.mkdir()
    marker = f"hub stand-in {secrets.token_hex(4)}"
    (site / "index.html").write_text(marker)
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                             "--directory", str(site), str(control_plane.hub_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    yield marker
    proc.terminate()
    proc.wait(30)


def test_tap_deploy_forwards_the_ui_to_the_ready_hub_pod_and_undeploys_on_exit(
    control_plane: ControlPlane, rest: Rest, hub_stand_in: str, tmp_path: Path
) -> None:
    ns = f"obs-{secrets.token_hex(3)}"
    port = _free_port_pair()
    helm = find_helm(os.environ.get("WIRETIDE_HELM"))  # found before HOME moves
    env = dict(os.environ, HOME=str(tmp_path), WIRETIDE_HELM=str(helm))
    tap = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "tap", "--deploy", "-A", "--undeploy-on-exit",
         "--kubeconfig", str(control_plane.kubeconfig), "--namespace-of-wiretide", ns,
         "--ui-port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(tap.stderr), daemon=True).start()
    try:
        ui = ""
        for line in tap.stdout:
            if line.startswith("UI: "):
                ui = line.split(" ", 1)[1].strip()
                break
        assert ui.startswith(f"http://localhost:{port}/?token="), "".join(err)
        secret = rest.get(f"/api/v1/namespaces/{ns}/secrets/{hub_token_secret('wiretide')}")
        token = base64.b64decode(secret["data"]["token"]).decode().strip()
        assert ui.endswith(token)
        body = _get(f"http://127.0.0.1:{port}/")  # API server -> kwok -> the stand-in
        assert body == hub_stand_in
        assert _get(f"http://127.0.0.1:{port}/") == hub_stand_in  # a second connection
    finally:
        tap.send_signal(signal.SIGINT)
        out = tap.stdout.read()
        tap.wait(400)
    text = out + "".join(err)
    assert tap.returncode == 0, text
    assert "Traceback" not in text, text
    assert f"removed wiretide from namespace {ns}" in text, text
    assert rest.get(f"/apis/apps/v1/namespaces/{ns}/deployments")["items"] == []
    assert rest.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets")["items"] == []
    rest.delete(f"/api/v1/namespaces/{ns}", grace=None)


def _get(url: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
