"""`wiretide tap POD_REGEX -n NS` on this machine against a real API server (root). Each
pod is a network namespace on a host bridge whose address kwok reports as the pod's IP;
real servers and curl send real HTTP between them. The tap captures the selected pods'
calls and names both sides from the API, while pods are deleted and re-created with new
IPs under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT, free_ports, run_wiretide
from tests.e2e.test_live_tap import curl, start_tap
from tests.producers.test_afpacket import Lan, lan, start_server, stop_server  # noqa: F401
from tests.wiretide.kube.conftest import create_pod, delete_pod, make_namespace, service
from tests.wiretide.kube.controlplane import Rest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.timeout(900),
]

# Free ports of this run: two runs on one machine must not capture each other's calls.
PORT, REDIS_PORT, GRPC_PORT = free_ports(3)


class TapLog:
    """The running tap's stderr, read as it comes (`targets: +1 -0 pod IPs` and such)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, after: int, timeout_s: float = 120) -> int:
        """The index of the first line from `after` on that holds `text`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i in range(after, len(self.lines)):
                if text in self.lines[i]:
                    return i + 1
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"tap never said {text!r}:\n" + "\n".join(self.lines))

    def finish(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        out = self.proc.stdout.read()
        self.proc.wait(400)
        self._thread.join(30)
        err = "\n".join(self.lines)
        assert self.proc.returncode == 0, f"tap exited {self.proc.returncode}:\n{out}\n{err}"
        assert "Traceback" not in out + err, out + err
        return out


def test_tap_names_pods_and_services_while_pods_are_recreated_with_new_ips(
    rest: Rest,
    kubeconfig: str,
    lan: Lan,  # noqa: F811
    wt_env: dict[str, str],
) -> None:
    ips = {name: lan.add_pod(name) for name in ("web1", "front", "lab", "web2", "other")}
    shop, lab = make_namespace(rest, "shop"), make_namespace(rest, "lab")
    rest.post(f"/api/v1/namespaces/{shop}/services", service("web", {"app": "web"}, PORT))
    create_pod(rest, shop, "web-1", {"app": "web"}, ips["web1"])
    create_pod(rest, shop, "front-1", {"app": "front"}, ips["front"])
    create_pod(rest, lab, "web-lab", {"app": "web"}, ips["lab"])  # another namespace
    servers = [start_server(ips[n], PORT, lan.netns(n)) for n in ("web1", "lab", "web2")]
    try:
        tap = TapLog(start_tap(["^(web|front)-", "-n", shop, "--kubeconfig", kubeconfig],
                               wt_env))  # fmt: skip
        before = {curl(lan.netns("front"), f"http://{ips['web1']}:{PORT}/a/{i}")[1]
                  for i in range(3)}  # fmt: skip
        for i in range(3):  # neither side selected: these calls stay out
            curl(lan.netns("other"), f"http://{ips['lab']}:{PORT}/lab/{i}")
        # The web pod is replaced: a new pod with a new IP, then the old one deleted.
        create_pod(rest, shop, "web-2", {"app": "web"}, ips["web2"])
        seen = tap.wait_for("targets: +1 -0", 0)
        delete_pod(rest, shop, "web-1")
        tap.wait_for("targets: +0 -1", seen)
        after = {curl(lan.netns("front"), f"http://{ips['web2']}:{PORT}/b/{i}")[1]
                 for i in range(3)}  # fmt: skip
        out = tap.finish()
    finally:
        for s in servers:
            stop_server(s)
    assert "stored 6 calls" in out, out
    calls = [json.loads(x) for x in run_wiretide(["query", "--json"], wt_env).stdout.splitlines()]
    by_port = {c["src"]["port"]: c for c in calls}
    assert set(by_port) == before | after
    for port, call in by_port.items():
        assert (call["src"]["name"], call["src"]["namespace"]) == ("front-1", shop), call
        want = "web-1" if port in before else "web-2"
        assert call["dst"]["pod"] == {"name": want, "namespace": shop}, call
        assert call["dst"]["service"] == {"name": "web", "namespace": shop}, call
    kfl_filter = f'dst.pod.name == "web-2" && src.namespace == "{shop}"'
    kfl = run_wiretide(["query", "--json", kfl_filter], wt_env)
    assert len(kfl.stdout.splitlines()) == 3


def _front_and_server(rest: Rest, lan: Lan, app: str, port: int) -> tuple[dict[str, str], str]:  # noqa: F811
    """Pods `front-1` and `<app>-1` behind service `<app>` (port) in a new namespace: the
    netns IPs by name ("front", app) and the namespace."""
    ips = {name: lan.add_pod(name) for name in (app, "front")}
    shop = make_namespace(rest, "shop")
    rest.post(f"/api/v1/namespaces/{shop}/services", service(app, {"app": app}, port))
    create_pod(rest, shop, f"{app}-1", {"app": app}, ips[app])
    create_pod(rest, shop, "front-1", {"app": "front"}, ips["front"])
    return ips, shop


def _assert_front_called(call: dict, shop: str, app: str) -> None:
    """A stored call from front-1 to <app>-1 of service <app>, both sides named."""
    assert (call["src"]["name"], call["src"]["namespace"]) == ("front-1", shop), call
    assert call["dst"]["pod"] == {"name": f"{app}-1", "namespace": shop}, call
    assert call["dst"]["service"] == {"name": app, "namespace": shop}, call


def _redis_cli(lan: Lan, pod: str, host: str, *command: str) -> str:  # noqa: F811
    argv = ["ip", "netns", "exec", lan.netns(pod), "redis-cli", "-h", host,
            "-p", str(REDIS_PORT), *command]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def test_tap_names_both_sides_of_redis_calls_between_pods(
    rest: Rest,
    kubeconfig: str,
    lan: Lan,  # noqa: F811
    wt_env: dict[str, str],
) -> None:
    """Not only HTTP: a real redis-server in one pod, redis-cli in another."""
    ips, shop = _front_and_server(rest, lan, "cache", REDIS_PORT)
    redis = subprocess.Popen(
        ["ip", "netns", "exec", lan.netns("cache"), "redis-server", "--bind", ips["cache"],
         "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _redis_cli(lan, "front", ips["cache"], "PING") != "PONG":
            assert time.monotonic() < deadline and redis.poll() is None, (
                "redis-server did not start"
            )
            time.sleep(0.2)
        tap = TapLog(start_tap(["^(cache|front)-", "-n", shop, "--kubeconfig", kubeconfig],
                               wt_env))  # fmt: skip
        assert _redis_cli(lan, "front", ips["cache"], "SET", "cart", "3") == "OK"
        assert _redis_cli(lan, "front", ips["cache"], "GET", "cart") == "3"
        assert _redis_cli(lan, "front", ips["cache"], "INCR", "visits") == "1"
        out = tap.finish()
    finally:
        redis.terminate()
        redis.wait(30)
    assert "stored 3 calls" in out, out
    calls = [
        json.loads(x)
        for x in run_wiretide(["query", "--json", "redis"], wt_env).stdout.splitlines()
    ]
    assert sorted(c["request"]["method"] for c in calls) == ["GET", "INCR", "SET"], calls
    for call in calls:
        _assert_front_called(call, shop, "cache")


_GRPC_CALL = """
import sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
get = channel.unary_unary("/stock.Stock/Get")
for sku in sys.argv[2:]:
    print(len(get(b"\\x0a" + bytes([len(sku)]) + sku.encode(), timeout=30)))
"""


def test_tap_names_both_sides_of_grpc_calls_between_pods(
    rest: Rest,
    kubeconfig: str,
    lan: Lan,  # noqa: F811
    wt_env: dict[str, str],
) -> None:
    """A real grpcio server in one pod (tests/replay/servers.py), a grpcio client in another."""
    ips, shop = _front_and_server(rest, lan, "stock", GRPC_PORT)
    server = subprocess.Popen(
        ["ip", "netns", "exec", lan.netns("stock"), sys.executable, "tests/replay/servers.py",
         "grpc", str(GRPC_PORT), "v1", ips["stock"]],
        cwd=ROOT,
    )  # fmt: skip
    client = ["ip", "netns", "exec", lan.netns("front"), sys.executable, "-c", _GRPC_CALL,
              f"{ips['stock']}:{GRPC_PORT}"]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*client, "ready"], capture_output=True, timeout=60).returncode:
            assert time.monotonic() < deadline and server.poll() is None, "no gRPC server"
            time.sleep(0.3)
        tap = TapLog(start_tap(["^(stock|front)-", "-n", shop, "--kubeconfig", kubeconfig],
                               wt_env))  # fmt: skip
        sent = subprocess.run([*client, "a1", "b2", "c3"], capture_output=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        out = tap.finish()
    finally:
        server.terminate()
        server.wait(30)
    assert "stored 3 calls" in out, out
    calls = [
        json.loads(x) for x in run_wiretide(["query", "--json", "grpc"], wt_env).stdout.splitlines()
    ]
    assert len(calls) == 3, calls
    for call in calls:
        assert call["request"]["path"] == "/stock.Stock/Get", call
        _assert_front_called(call, shop, "stock")
