"""The Kubernetes API through the kubernetes client: list and watch pods and services,
as the JSON dicts `model` works on."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schemas.errors import WiretideError


class NoCluster(WiretideError):
    """No kubeconfig and not inside a pod: there is no cluster to target."""


class KubeError(WiretideError):
    pass


class WatchExpired(KubeError):
    """The watch's resourceVersion is older than the server keeps (410 Gone, e.g. after
    etcd compacted it): the only way on is to list again."""


def kubeconfig_path(explicit: str | None = None) -> Path | None:
    raw = explicit or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
    path = Path(raw).expanduser()
    return path if path.is_file() else None


def cluster_available(explicit: str | None = None) -> bool:
    return kubeconfig_path(explicit) is not None or "KUBERNETES_SERVICE_HOST" in os.environ


class KubeApi:
    """Pods and services of a cluster; every call returns plain dicts."""

    def __init__(self, kubeconfig: str | None = None) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        path = kubeconfig_path(kubeconfig)
        try:
            if path is not None:
                config.load_kube_config(config_file=str(path), client_configuration=configuration)
            elif "KUBERNETES_SERVICE_HOST" in os.environ:
                config.load_incluster_config(client_configuration=configuration)
            else:
                raise NoCluster(
                    "no Kubernetes cluster: no kubeconfig (set KUBECONFIG or ~/.kube/config)"
                    " and not running in a pod"
                )
        except (config.ConfigException, OSError, ValueError) as ex:
            raise KubeError(f"cannot load kubeconfig {path}: {ex}") from None
        self.server = configuration.host
        self.core = client.CoreV1Api(client.ApiClient(configuration))

    def call(self, fn: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self._open(fn, **kwargs)
            return json.loads(resp.data)
        except ValueError as ex:
            raise KubeError(f"bad answer from the Kubernetes API {self.server}: {ex}") from None

    def _open(self, fn: Any, timeout: Any = 30, **kwargs: Any) -> Any:
        """The raw response of one API call; refusals and network errors are one line."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(_preload_content=False, _request_timeout=timeout, **kwargs)
        except ApiException as ex:
            if ex.status == 410:  # a watch from a version etcd no longer has
                raise WatchExpired(f"watch at {self.server} expired: {ex.reason}") from None
            raise KubeError(refusal(self.server, ex.status, ex.reason, ex.body)) from None
        except (HTTPError, OSError) as ex:
            raise KubeError(f"cannot reach the Kubernetes API at {self.server}: {ex}") from None

    def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        doc = self.call(self.core.list_pod_for_all_namespaces)
        return doc.get("items") or [], (doc.get("metadata") or {}).get("resourceVersion", "")

    def list_services(self) -> tuple[list[dict[str, Any]], str]:
        doc = self.call(self.core.list_service_for_all_namespaces)
        return doc.get("items") or [], (doc.get("metadata") or {}).get("resourceVersion", "")

    def watch_pods(
        self, resource_version: str, timeout_s: int = 300
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.watch(self.core.list_pod_for_all_namespaces, resource_version, timeout_s)

    def watch_services(
        self, resource_version: str, timeout_s: int = 300
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.watch(self.core.list_service_for_all_namespaces, resource_version, timeout_s)

    def watch(
        self, fn: Any, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(ADDED | MODIFIED | DELETED | BOOKMARK, object) events after `resource_version`,
        until the server ends the watch. An expired version raises WatchExpired."""
        from urllib3.exceptions import HTTPError

        resp = self._open(fn, timeout=(30, timeout_s + 30), watch=True,
                          resource_version=resource_version, timeout_seconds=timeout_s,
                          allow_watch_bookmarks=True)  # fmt: skip
        try:
            for line in _lines(resp):
                event = json.loads(line)
                kind, obj = event.get("type", ""), event.get("object") or {}
                if kind == "ERROR":
                    raise _watch_error(self.server, obj)
                if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    yield kind, obj
        except (HTTPError, OSError) as ex:
            raise KubeError(f"watch at {self.server} broke off: {ex}") from None
        finally:
            resp.release_conn()


def _lines(resp: Any) -> Iterator[bytes]:
    """The watch's newline-delimited JSON events as they arrive."""
    pending = b""
    for chunk in resp.stream(65536, decode_content=False):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line for line in lines if line.strip())
    if pending.strip():
        yield pending


def _watch_error(server: str, status: dict[str, Any]) -> KubeError:
    code = status.get("code")
    message = status.get("message") or status.get("reason") or "error"
    if code == 410:
        return WatchExpired(f"watch at {server} expired: {message}")
    return KubeError(f"Kubernetes API {server} ended a watch: {code} {message}")


def refusal(server: str, status: int | None, reason: str | None, body: Any) -> str:
    """One line for a refused request; the API's own message says which permission is
    missing (`pods is forbidden: User "..." cannot list resource "pods" ...`)."""
    message = ""
    try:
        message = json.loads(body).get("message", "") if body else ""
    except (ValueError, AttributeError):
        pass
    line = f"Kubernetes API {server} refused: {status} {reason}"
    if message:
        line += f": {' '.join(str(message).split())}"
    if status == 403:
        line += " (the role bound to this user needs that permission)"
    return line
