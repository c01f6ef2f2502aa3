"""A real Kubernetes control plane on loopback for the tests: etcd, kube-apiserver (TLS,
client certificates, Node,RBAC), kube-controller-manager, kube-scheduler and kwok as the
kubelet of one node. Built by scripts/build-k8s.sh (cached); started on free ports.

`Rest` is a small admin client over the real TLS endpoint (stdlib only): the tests make
objects with it, the code under test talks through the kubernetes client as users' does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
K8S = Path(os.environ.get("WIRETIDE_K8S_DIR", Path.home() / ".cache/wiretide/k8s"))
BIN = K8S / "bin"
NODE = "kwok-node-0"
# The test's pods carry the address of their network namespace: kwok's pod-ready stage
# takes it from this annotation instead of allocating one from its CIDR.
IP_ANNOTATION = "wiretide.test/pod-ip"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA, the API server's serving certificate for 127.0.0.1, an admin client
    certificate (O=system:masters) and the service-account signing key pair."""
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=wiretide-test-ca", cwd=d)  # fmt: skip
    (d / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.96.0.1\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subj, ext in (("apiserver", "/CN=kube-apiserver", "san.ext"),
                            ("admin", "/O=system:masters/CN=admin", "client.ext")):  # fmt: skip
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", subj, cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext,
                cwd=d)  # fmt: skip
    openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def kubeconfig(server: str, ca: Path, user: dict[str, str]) -> str:
    user_lines = "\n".join(f"    {k}: {v}" for k, v in user.items())
    return f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: user
  user:
{user_lines}
contexts:
- name: test
  context: {{cluster: test, user: user}}
current-context: test
"""


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status = status
        self.body = body


@dataclass
class Rest:
    """JSON over the API server's TLS port, as the admin (client certificate) or with a
    bearer token."""

    server: str
    pki: Path
    token: str | None = None
    _ctx: ssl.SSLContext = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if self.token is None:
            self._ctx.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> dict[str, Any]:  # fmt: skip
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=60) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as ex:
            raw = ex.read()
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"message": raw.decode(errors="replace")}
            raise ApiError(ex.code, doc) from None
        try:
            return json.loads(raw)
        except ValueError:  # /readyz's "ok", a watch's lines of events
            return {"raw": raw.decode()}

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> dict[str, Any]:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> dict[str, Any]:
        return self.request("PATCH", path, body, "application/merge-patch+json")

    def delete(self, path: str, grace: int | None = 0) -> dict[str, Any]:
        body = None if grace is None else {"gracePeriodSeconds": grace}
        return self.request("DELETE", path, body)

    def wait(self, what: str, check, timeout_s: float = 120.0) -> Any:  # noqa: ANN001
        """Poll `check()` until it returns something truthy (API errors count as not yet)."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            try:
                got = check()
                if got:
                    return got
            except ApiError as ex:
                last = ex
            time.sleep(0.2)
        raise TimeoutError(f"{what}: not within {timeout_s:.0f} s (last: {last})")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(30)


def start(name: str, argv: list[str], logdir: Path) -> Proc:
    log = logdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)  # fmt: skip
    return Proc(name, popen, log)


def kwok_config(out: Path, hub_port: int) -> Path:
    """kwok's own stages (built next to the binaries), with pod-ready taking a pod's IP
    from IP_ANNOTATION when it has one; and a port-forward of every pod's port 8899 (the
    hub's) to 127.0.0.1:hub_port, where a test runs a process standing in for the hub."""
    text = (K8S / "kwok-stages.yaml").read_text()
    start = text.find("{{ with $podIPs }}")
    end = text.find("      phase: Running", start)
    assert start > 0 and end > 0, "kwok's pod-ready stage changed: update kwok_config()"
    mine = (
        '{{ $mine := "" }}{{ with .metadata.annotations }}{{ with index . "'
        + IP_ANNOTATION
        + '" }}{{ $mine = . }}{{ end }}{{ end }}\n'
        "      {{ if $mine }}\n      podIP: {{ $mine | Quote }}\n      podIPs:\n"
        "      - ip: {{ $mine | Quote }}\n      {{ else }}"
    )
    text = text[:start] + mine + text[start:end] + "      {{ end }}\n" + text[end:]
    forward = f"""---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata:
  name: hub-stand-in
spec:
  forwards:
  - ports: [8899]
    target: {{port: {hub_port}, address: 127.0.0.1}}
"""
    out.write_text(text + "\n" + forward)
    return out


@dataclass
class ControlPlane:
    """The running control plane: `server`, the admin `kubeconfig` and `rest` client."""

    root: Path
    server: str = ""
    etcd_url: str = ""
    hub_port: int = field(default_factory=free_port)  # where kwok forwards pods' :8899
    procs: list[Proc] = field(default_factory=list)
    startup_s: dict[str, float] = field(default_factory=dict)

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def rest(self) -> Rest:
        return Rest(self.server, self.pki)

    def user_kubeconfig(self, name: str, token: str) -> Path:
        path = self.root / f"{name}.kubeconfig"
        path.write_text(kubeconfig(self.server, self.pki / "ca.crt", {"token": token}))
        return path

    def _check(self) -> None:
        for p in self.procs:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited ({p.popen.returncode}):\n{p.tail()}")

    def _until(self, what: str, ok, timeout_s: float = 180.0) -> float:  # noqa: ANN001
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            self._check()
            try:
                if ok():
                    return time.monotonic() - t0
            except (OSError, ApiError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{what} not ready within {timeout_s:.0f} s:\n{self.procs[-1].tail()}")

    def start(self) -> ControlPlane:
        make_pki(self.pki)
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        t0 = time.monotonic()
        self._start_etcd(logs)
        self._start_apiserver(logs)
        self.kubeconfig.write_text(kubeconfig(self.server, self.pki / "ca.crt", {
            "client-certificate": str(self.pki / "admin.crt"),
            "client-key": str(self.pki / "admin.key")}))  # fmt: skip
        self._start_controllers(logs)
        self.startup_s["control plane"] = time.monotonic() - t0
        return self

    def _start_etcd(self, logs: Path) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.procs.append(start("etcd", [
            str(BIN / "etcd"), "--name", "wt", "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"wt=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level", "warn"], logs))  # fmt: skip
        self.startup_s["etcd"] = self._until("etcd", lambda: b'"health":"true"' in
                                             urllib.request.urlopen(self.etcd_url + "/health",
                                                                    timeout=5).read())  # fmt: skip

    def _start_apiserver(self, logs: Path) -> None:
        port, pki = free_port(), self.pki
        self.server = f"https://127.0.0.1:{port}"
        self.procs.append(start("kube-apiserver", [
            str(BIN / "kube-apiserver"), f"--etcd-servers={self.etcd_url}",
            f"--secure-port={port}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", "--authorization-mode=Node,RBAC",
            f"--client-ca-file={pki / 'ca.crt'}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--profiling=false", "-v=1",
            # Pods are watched from etcd itself: its compaction expires an old version at
            # once (the watch cache would keep it for 75 s), so a test can meet a 410.
            "--watch-cache-sizes=pods#0",
        ], logs))  # fmt: skip
        rest = self.rest
        self.startup_s["kube-apiserver"] = self._until(
            "kube-apiserver /readyz", lambda: rest.get("/readyz").get("raw") == "ok"
        )

    def _start_controllers(self, logs: Path) -> None:
        kc, pki = str(self.kubeconfig), self.pki
        self.procs.append(start("kube-controller-manager", [
            str(BIN / "kube-controller-manager"), f"--kubeconfig={kc}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}", "--use-service-account-credentials=false",
            "--controllers=*",  # node-lifecycle lifts the new node's not-ready taint
            "--concurrent-deployment-syncs=2", "--profiling=false", "-v=1"], logs))  # fmt: skip
        self.procs.append(start("kube-scheduler", [
            str(BIN / "kube-scheduler"), f"--kubeconfig={kc}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "-v=1"], logs))  # fmt: skip
        kubelet = free_port()  # kwok's server: port-forward, as a kubelet's
        self.procs.append(start("kwok", [
            str(BIN / "kwok"), f"--kubeconfig={kc}", "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--config={kwok_config(self.root / 'kwok.yaml', self.hub_port)}",
            "--cidr=10.244.0.0/16", "--node-ip=127.0.0.1", f"--node-port={kubelet}",
            f"--server-address=127.0.0.1:{kubelet}"], logs))  # fmt: skip
        rest = self.rest
        rest.post("/api/v1/nodes", node(NODE))
        self.startup_s["node Ready"] = self._until(
            "kwok's node Ready",
            lambda: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in rest.get(f"/api/v1/nodes/{NODE}").get("status", {}).get("conditions", [])
            ),
        )
        self.startup_s["default ServiceAccount"] = self._until("the default ServiceAccount",
            lambda: rest.get("/api/v1/namespaces/default/serviceaccounts/default"))  # fmt: skip

    def stop(self) -> None:
        """kwok and the controllers, then the API server (waited for: an API server whose
        etcd is gone hangs), then etcd."""
        for p in reversed(self.procs):
            p.stop()


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "annotations": {"kwok.x-k8s.io/node": "fake",
                                      "node.alpha.kubernetes.io/ttl": "0"},
        "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                   "type": "kwok"}}, "spec": {}}  # fmt: skip
