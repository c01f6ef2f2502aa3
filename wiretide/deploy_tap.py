"""`wiretide tap --deploy`: the tap's pod selector deployed as the Helm chart onto the
cluster of the kubeconfig (helm --wait gives readiness), then the hub's pod port-forwarded
to 127.0.0.1:<--ui-port> through the Kubernetes API, like Kubeshark's `tap`.

Pure parts: `chart_values` (selector -> values) and `relay` (bytes both ways between two
socket-like objects). The rest is I/O: helm through wiretide.deploy, the API through the
kubernetes client."""

from __future__ import annotations

import argparse
import base64
import contextlib
import select
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import yaml

from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide import deploy
from wiretide.deploy import DeployError

RELEASE = "wiretide"
HUB_LABEL = "app.kubernetes.io/component=hub"
# tap options that mean something only to a local tap; with --deploy they are refused.
LOCAL_ONLY = {
    "pcap": "--pcap",
    "interface": "--interface",
    "port": "--port",
    "host": "--host",
    "duration": "--for",
    "netns": "--netns",
    "redaction": "--redaction",
    "rules": "--rules",
    "no_ui": "--no-ui",
    "keep_ui": "--keep-ui",
    "kafka": "--kafka",
    "clickhouse": "--clickhouse",
    "data": "--data",
}


# --- pure parts -------------------------------------------------------------------


def chart_values(
    pod_regex: str | None, namespaces: list[str] | None, all_namespaces: bool, tls: bool
) -> dict[str, Any]:
    """The chart's agent values for `tap [POD_REGEX] [-n NS]... [-A] [--tls]`: the same
    pods a local tap would target (no -n and no -A: namespace "default")."""
    from wiretide.kube.model import PodSelector

    try:
        selector = PodSelector.parse(pod_regex, namespaces or (), all_namespaces)
    except ValueError as ex:
        raise WiretideError(str(ex)) from None
    return {
        "agent": {
            "podRegex": selector.regex.pattern,
            "allNamespaces": selector.all_namespaces,
            "namespaces": [] if selector.all_namespaces else list(selector.namespaces),
            "tls": bool(tls),
        }
    }


def hub_token_secret(release: str) -> str:
    """The chart's token Secret name (templates/_helpers.tpl wiretide.hubTokenSecret)."""
    return f"{release}-wiretide"[:50].removesuffix("-") + "-hub-token"


class SocketLike(Protocol):
    def fileno(self) -> int: ...
    def recv(self, size: int) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...
    def shutdown(self, how: int) -> None: ...
    def close(self) -> None: ...


def relay(a: SocketLike, b: SocketLike, chunk: int = 65536) -> tuple[int, int]:
    """Copy bytes a->b and b->a until both directions end; an end seen on one side is
    passed on as a half-close of the other. Closes both; returns (bytes a->b, b->a)."""
    peer = {a.fileno(): b, b.fileno(): a}
    source = {a.fileno(): a, b.fileno(): b}
    copied = {a.fileno(): 0, b.fileno(): 0}
    open_ends = set(source)
    poller = select.poll()  # not select(): a busy process has fds above 1024
    for fd in open_ends:
        poller.register(fd, select.POLLIN)
    try:
        while open_ends:
            for fd, _ in poller.poll():
                try:
                    data = source[fd].recv(chunk)
                except OSError:  # reset: nothing more will come either way
                    return copied[a.fileno()], copied[b.fileno()]
                if data:
                    try:
                        peer[fd].sendall(data)
                    except OSError:
                        return copied[a.fileno()], copied[b.fileno()]
                    copied[fd] += len(data)
                    continue
                open_ends.discard(fd)
                poller.unregister(fd)
                with contextlib.suppress(OSError):
                    peer[fd].shutdown(socket.SHUT_WR)
        return copied[a.fileno()], copied[b.fileno()]
    finally:
        for end in (a, b):
            with contextlib.suppress(OSError):
                end.close()


# --- I/O ---------------------------------------------------------------------------


def _refuse_local_options(args: argparse.Namespace) -> None:
    used = [flag for name, flag in LOCAL_ONLY.items() if getattr(args, name, None)]
    if used:
        raise WiretideError(
            f"{', '.join(used)}: not with --deploy (the cluster's agents capture; "
            "leave them out or tap locally without --deploy)"
        )


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def helm_deploy(
    args: argparse.Namespace, render: bool = False, settings: Settings | None = None
) -> int:
    """`wiretide deploy` with the tap's selector as a values file (render: print only);
    `settings` default to the environment's."""
    values = chart_values(args.pod_regex, args.namespace, args.all_namespaces, args.tls)
    with tempfile.TemporaryDirectory(prefix="wiretide-tap-") as tmp:
        path = Path(tmp) / "tap-values.yaml"
        path.write_text(yaml.safe_dump(values))
        return deploy.run_deploy(
            argparse.Namespace(
                release=RELEASE,
                namespace=args.namespace_of_wiretide,
                kubeconfig=args.kubeconfig,
                chart=None,
                values=[str(path)],
                set_values=[],
                timeout=10,
                render=render,
            ),
            settings or Settings.from_env(),
        )


def _listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as ex:
        listener.close()
        raise WiretideError(
            f"cannot listen on 127.0.0.1:{port}: {ex.strerror}; pick another with --ui-port"
        ) from None
    listener.listen(16)
    return listener


def _reachable_api(kubeconfig: str | None):  # noqa: ANN202 - KubeApi
    from wiretide.kube.client import KubeApi

    api = KubeApi(kubeconfig)
    api.call(api.core.get_api_resources)  # fails in one line before anything is deployed
    return api


def _hub_pod(api, namespace: str) -> tuple[str, int]:  # noqa: ANN001 - KubeApi
    """A running, ready hub pod of the release and its http port."""
    selector = f"{HUB_LABEL},app.kubernetes.io/instance={RELEASE}"
    pods = api.call(api.core.list_namespaced_pod, namespace=namespace, label_selector=selector)
    for pod in pods.get("items") or []:
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if status.get("phase") == "Running" and ready:
            port = next(
                (
                    p["containerPort"]
                    for c in pod["spec"]["containers"]
                    for p in c.get("ports") or []
                    if p.get("name") == "http"
                ),
                8899,
            )
            return pod["metadata"]["name"], int(port)
    raise DeployError(
        f"no ready hub pod ({selector}) in namespace {namespace}: "
        f"see kubectl -n {namespace} get pods"
    )


def _hub_token(api, namespace: str) -> str:  # noqa: ANN001 - KubeApi
    name = hub_token_secret(RELEASE)
    secret = api.call(api.core.read_namespaced_secret, name=name, namespace=namespace)
    try:
        return base64.b64decode((secret.get("data") or {})["token"]).decode().strip()
    except (KeyError, ValueError) as ex:
        raise DeployError(f"secret {namespace}/{name} has no readable key token") from ex


class HubForwarder:
    """Accepts on a local listener; each connection gets its own port-forward stream to
    the hub pod, relayed on a thread of its own."""

    def __init__(self, api, namespace: str, listener: socket.socket) -> None:  # noqa: ANN001
        self.api = api
        self.namespace = namespace
        self.listener = listener
        self.pod, self.port = _hub_pod(api, namespace)

    def _stream(self):  # noqa: ANN202 - the port-forward's socket-like end
        from kubernetes.stream import portforward

        forward = portforward(
            self.api.core.connect_get_namespaced_pod_portforward,
            self.pod,
            self.namespace,
            ports=str(self.port),
        )
        return forward.socket(self.port)

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            try:
                remote = self._stream()
            except Exception:  # noqa: BLE001 - the pod may have moved: look again, once
                self.pod, self.port = _hub_pod(self.api, self.namespace)
                remote = self._stream()
        except Exception as ex:  # noqa: BLE001 - one line per failed connection
            _progress(f"port-forward to {self.namespace}/{self.pod} failed: {ex}")
            conn.close()
            return
        relay(conn, remote)

    def serve_forever(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()


def run_tap_deploy(args: argparse.Namespace, settings: Settings) -> int:
    _refuse_local_options(args)
    chart_values(args.pod_regex, args.namespace, args.all_namespaces, args.tls)  # bad regex
    deploy.require_helm(settings)  # no helm: one line, nothing done
    listener = _listen(args.ui_port)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    deployed = False
    try:
        api = _reachable_api(args.kubeconfig)
        deployed = True  # from here on, a failed or partial install is ours to remove
        helm_deploy(args, settings=settings)
        _forward(args, api, listener)
    except BaseException:
        if deployed and args.undeploy_on_exit:
            with contextlib.suppress(WiretideError):  # the first failure is the one to show
                _undeploy(args, settings)
        raise
    finally:
        listener.close()
        signal.signal(signal.SIGTERM, previous)
    if args.undeploy_on_exit:
        _undeploy(args, settings)
    return 0


def _forward(args: argparse.Namespace, api, listener: socket.socket) -> None:  # noqa: ANN001
    namespace = args.namespace_of_wiretide
    forwarder = HubForwarder(api, namespace, listener)
    token = _hub_token(api, namespace)
    port = listener.getsockname()[1]
    _progress(f"forwarding 127.0.0.1:{port} -> {namespace}/{forwarder.pod}:{forwarder.port}")
    print(f"UI: http://localhost:{port}/?token={quote(token, safe='')}", flush=True)
    _progress("Ctrl-C stops forwarding" + (" and undeploys" if args.undeploy_on_exit else ""))
    try:
        forwarder.serve_forever()
    except KeyboardInterrupt:
        _progress("stopped forwarding")


def _undeploy(args: argparse.Namespace, settings: Settings) -> None:
    _progress(f"removing {RELEASE} from namespace {args.namespace_of_wiretide}...")
    deploy.run_undeploy(
        argparse.Namespace(
            release=RELEASE, namespace=args.namespace_of_wiretide, kubeconfig=args.kubeconfig
        ),
        settings,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
