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
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            resp = fn(_preload_content=False, _request_timeout=30, **kwargs)
            return json.loads(resp.data)
        except ApiException as ex:
            raise KubeError(
                f"Kubernetes API {self.server} refused: {ex.status} {ex.reason}"
            ) from None
        except (HTTPError, OSError, ValueError) as ex:
            raise KubeError(f"cannot reach the Kubernetes API at {self.server}: {ex}") from None

    def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        doc = self.call(self.core.list_pod_for_all_namespaces)
        return doc.get("items") or [], (doc.get("metadata") or {}).get("resourceVersion", "")

    def list_services(self) -> list[dict[str, Any]]:
        return self.call(self.core.list_service_for_all_namespaces).get("items") or []

    def watch_pods(
        self, resource_version: str, timeout_s: int = 300
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(ADDED | MODIFIED | DELETED, pod) events after `resource_version`, until the
        server ends the watch."""
        from kubernetes import watch

        stream = watch.Watch().stream(
            self.core.list_pod_for_all_namespaces,
            resource_version=resource_version,
            timeout_seconds=timeout_s,
            deserialize=False,  # dicts, as everywhere here; no model validation
        )
        for event in stream:
            kind = event.get("type", "")
            raw = event.get("raw_object") or event.get("object") or {}
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                yield kind, raw
