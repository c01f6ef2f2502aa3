"""`wiretide tap --deploy` against what exists here: the real helm binary (the selector
rendered into the chart's agent DaemonSet), real socket pairs for the port-forward relay,
and NO Kubernetes cluster — a kubeconfig pointing at a closed port stands for an
unreachable one. Deploying, waiting for the hub, the port-forward stream to a hub pod and
the token Secret need a live cluster and are not exercised here."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.conftest import _free_port_pair
from tests.deploy._support import ROOT, cli_error, find_helm
from tests.deploy.test_deploy_cli import CLOSED_PORT, fake_kubeconfig, one_error_line
from wiretide.cli import build_parser, main
from wiretide.deploy_tap import helm_deploy, hub_token_secret, relay

HELM = find_helm()
needs_helm = pytest.mark.skipif(
    HELM is None, reason="no helm: set $WIRETIDE_HELM or run scripts/build-helm.sh"
)


def agent_args(tap_argv: list[str], capsys: pytest.CaptureFixture) -> tuple[list[str], dict]:
    """The agent container's args, and the manifests, helm renders for `wiretide tap ...`."""
    args = build_parser().parse_args(["tap", "--deploy", *tap_argv])
    assert helm_deploy(args, render=True) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    agent = next(d for d in docs if d["kind"] == "DaemonSet")
    return agent["spec"]["template"]["spec"]["containers"][0]["args"], {
        (d["kind"], d["metadata"]["name"]): d for d in docs
    }


@needs_helm
@pytest.mark.parametrize(
    ("tap_argv", "expected"),
    [
        ([], [".*", "--namespace", "default"]),
        (["^api-"], ["^api-", "--namespace", "default"]),
        (["-A"], [".*", "--all-namespaces"]),
        (["-n", "a", "-n", "b"], [".*", "--namespace", "a", "--namespace", "b"]),
        ([r"^pay-\d+$", "-n", "shop", "--tls"], [r"^pay-\d+$", "--namespace", "shop", "--tls"]),
        (["web|db", "-A", "-n", "ignored"], ["web|db", "--all-namespaces"]),
    ],
)
def test_the_selector_becomes_the_agents_arguments(
    tap_argv: list[str], expected: list[str], clean_env: Path, capsys: pytest.CaptureFixture
) -> None:
    """Each as `wiretide agent` reads it; without --tls the chart's default (on) is off."""
    args, _ = agent_args(tap_argv, capsys)
    assert args == ["wiretide", "agent", *expected, "--buffer", "16"]


@needs_helm
def test_the_hub_and_its_token_secret_are_where_the_tap_looks(
    clean_env: Path, capsys: pytest.CaptureFixture
) -> None:
    _, docs = agent_args(["--namespace-of-wiretide", "observe"], capsys)
    secret = docs[("Secret", hub_token_secret("wiretide"))]
    assert secret["metadata"]["namespace"] == "observe" and "token" in secret["data"]
    hub = docs[("Deployment", "wiretide-wiretide-hub")]
    labels = hub["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "hub"
    assert labels["app.kubernetes.io/instance"] == "wiretide"
    assert hub["metadata"]["namespace"] == "observe"


def test_the_flags_parse_with_the_real_cli() -> None:
    assert cli_error(["wiretide", "tap", "--deploy", "api", "-n", "shop", "--ui-port", "0"]) is None
    assert cli_error(["wiretide", "tap", "--deploy", "--undeploy-on-exit", "-A", "--tls"]) is None
    assert cli_error(["wiretide", "tap", "--deploy", "--namespace-of-wiretide", "obs"]) is None


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@needs_helm
def test_an_unreachable_cluster_is_one_line_before_anything_is_deployed(
    clean_env: Path, capsys: pytest.CaptureFixture
) -> None:
    kubeconfig = str(fake_kubeconfig(clean_env))
    argv = ["tap", "--deploy", "api", "--kubeconfig", kubeconfig, "--ui-port", "0"]
    for extra in ([], ["--undeploy-on-exit"]):
        code, out, err = run_cli([*argv, *extra], capsys)
        assert code == 2 and out == ""
        line = one_error_line(err)
        assert "cannot reach the Kubernetes API" in line and f"127.0.0.1:{CLOSED_PORT}" in line


def test_missing_helm_is_one_line(
    clean_env: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIRETIDE_HELM", raising=False)
    monkeypatch.setenv("PATH", str(clean_env))  # no helm there, and none cached in $HOME
    kubeconfig = str(fake_kubeconfig(clean_env))
    code, out, err = run_cli(["tap", "--deploy", "--kubeconfig", kubeconfig], capsys)
    assert code == 2 and out == ""
    assert "helm not found" in one_error_line(err)


def test_bad_input_is_one_line(clean_env: Path, capsys: pytest.CaptureFixture) -> None:
    cases = {
        ("--deploy", "api-(", "--ui-port", "0"): "bad pod regex",
        ("--deploy", "--pcap", "x.pcap", "--for", "3"): "--pcap, --for: not with --deploy",
    }
    for argv, expected in cases.items():
        code, out, err = run_cli(["tap", *argv], capsys)
        assert code == 2 and out == ""
        assert expected in one_error_line(err), err


@needs_helm
def test_a_busy_ui_port_is_one_line(clean_env: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        code, _, err = run_cli(["tap", "--deploy", "--ui-port", port], capsys)
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(err)


def test_the_relay_copies_both_ways_and_closes() -> None:
    """browser <-> (local, remote) <-> hub, over two real socket pairs."""
    browser, local = socket.socketpair()
    remote, hub = socket.socketpair()
    counts: list[tuple[int, int]] = []
    worker = threading.Thread(target=lambda: counts.append(relay(local, remote)))
    worker.start()
    request = b"GET /api/calls HTTP/1.1\r\nHost: localhost:8899\r\n\r\n"
    browser.sendall(request)
    assert _read_exactly(hub, len(request)) == request
    response = os.urandom(300_000)  # more than one recv: the relay loops
    hub.sendall(response)
    assert _read_exactly(browser, len(response)) == response
    browser.shutdown(socket.SHUT_WR)  # the browser is done: the hub sees the end...
    assert hub.recv(1) == b""
    hub.sendall(b"last words")  # ...and can still answer (half-close) before it closes
    hub.close()
    assert _read_all(browser) == b"last words"
    worker.join()
    assert counts == [(len(request), len(response) + len(b"last words"))]
    assert local.fileno() == -1 and remote.fileno() == -1
    browser.close()


def test_the_relay_ends_when_a_side_resets() -> None:
    """A browser's TCP reset ends the relay, and the port-forward end is closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    browser = socket.create_connection(listener.getsockname())
    local, _ = listener.accept()
    remote, hub = socket.socketpair()
    worker = threading.Thread(target=relay, args=(local, remote))
    worker.start()
    hub.sendall(b"partial")
    assert _read_exactly(browser, 7) == b"partial"
    browser.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    browser.close()  # linger 0: a reset, not an orderly end
    worker.join()
    assert local.fileno() == -1 and remote.fileno() == -1
    assert _read_all(hub) == b""
    hub.close()
    listener.close()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@needs_helm
def test_the_wiretide_command_taps_with_deploy(tmp_path: Path) -> None:
    """Through the real entry point, as a user types it."""
    env = dict(os.environ, HOME=str(tmp_path), WIRETIDE_HELM=HELM)
    env.pop("KUBECONFIG", None)
    kubeconfig = str(fake_kubeconfig(tmp_path))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wiretide",
            "tap",
            "--deploy",
            "-A",
            "--kubeconfig",
            kubeconfig,
            "--ui-port",
            str(_free_port_pair()),
        ],  # 8899 may be taken on a shared machine
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.startswith("wiretide: error: cannot reach the Kubernetes API")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
