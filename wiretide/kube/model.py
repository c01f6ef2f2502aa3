"""Pure functions over Kubernetes API objects (the JSON dicts the API server returns)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.records import Endpoint

Obj = Mapping[str, Any]

# Containers (or annotations) that mean a pod's traffic between pods is mTLS by a proxy.
_SIDECARS = {"istio-proxy": "istio", "linkerd-proxy": "linkerd", "envoy": "envoy"}
_MESH_ANNOTATIONS = {"sidecar.istio.io/status": "istio", "linkerd.io/proxy-version": "linkerd"}


@dataclass(frozen=True, slots=True)
class PodSelector:
    """`tap [POD_REGEX] [-n NS]... [-A]`: a name regex and the namespaces to look in
    (empty with `all_namespaces`: every one; empty without it: "default")."""

    regex: re.Pattern[str]
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False

    @classmethod
    def parse(
        cls, regex: str | None, namespaces: Iterable[str] = (), all_namespaces: bool = False
    ) -> PodSelector:
        try:
            pattern = re.compile(regex or ".*")
        except re.error as ex:
            raise ValueError(f"bad pod regex {regex!r}: {ex}") from None
        ns = tuple(dict.fromkeys(namespaces))
        return cls(pattern, ns if ns or all_namespaces else ("default",), all_namespaces)

    def wants_namespace(self, namespace: str) -> bool:
        return self.all_namespaces or namespace in self.namespaces

    def matches(self, pod: Obj) -> bool:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get("app.kubernetes.io/name") == "wiretide":
            return False  # Wiretide's own pods: capturing them would feed back into itself
        return self.wants_namespace(meta.get("namespace", "")) and bool(
            self.regex.search(meta.get("name", ""))
        )


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or () if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def is_host_network(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))


def is_running(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def has_ended(pod: Obj) -> bool:
    """Succeeded or Failed: its containers are gone and its IP back in the node's pool
    (the API keeps such a pod, and its podIP, until someone deletes it)."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def selects(service: Obj, pod: Obj) -> bool:
    """The service's selector matches the pod's labels (same namespace)."""
    s_meta, p_meta = service.get("metadata") or {}, pod.get("metadata") or {}
    if s_meta.get("namespace") != p_meta.get("namespace"):
        return False
    selector = (service.get("spec") or {}).get("selector") or {}
    labels = p_meta.get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_ips(service: Obj) -> list[str]:
    spec = service.get("spec") or {}
    ips = list(spec.get("clusterIPs") or ())
    if not ips and spec.get("clusterIP"):
        ips = [spec["clusterIP"]]
    return [ip for ip in ips if ip and ip != "None"]


def endpoints(pods: Iterable[Obj], services: Iterable[Obj]) -> list[Endpoint]:
    """IP → identity for the given pods (host-network pods excluded: their IP is the
    node's; ended pods too: a new pod may have their IP already) and for the cluster IPs
    of services. An IP left out keeps its last identity for the publisher's linger, as
    a deleted pod's does, unless a new pod takes it first."""
    services = list(services)
    now = 0  # stamped when published
    out: list[Endpoint] = []
    for svc in services:
        meta = svc.get("metadata") or {}
        for ip in service_ips(svc):
            out.append(Endpoint(ip, "service", meta.get("name", ""), meta.get("namespace", ""),
                                meta.get("name", ""), "", (), now))  # fmt: skip
    for pod in pods:
        if is_host_network(pod) or has_ended(pod):
            continue
        meta = pod.get("metadata") or {}
        service = next(
            (s["metadata"]["name"] for s in sorted(services, key=_name) if selects(s, pod)), ""
        )
        labels = tuple(sorted((meta.get("labels") or {}).items()))
        node = (pod.get("spec") or {}).get("nodeName", "")
        for ip in pod_ips(pod):
            out.append(Endpoint(ip, "pod", meta.get("name", ""), meta.get("namespace", ""),
                                service, node, labels, now))  # fmt: skip
    return out


def _name(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def container_ids(pod: Obj) -> list[str]:
    """Runtime ids of the pod's running containers (`containerd://<id>` → `<id>`)."""
    status = pod.get("status") or {}
    ids = []
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        cid = cs.get("containerID") or ""
        if "://" in cid and "running" in (cs.get("state") or {}):
            ids.append(cid.split("://", 1)[1])
    return ids


def mesh_of(pod: Obj) -> str | None:
    """The service mesh whose sidecar proxies this pod ("istio", "linkerd", "envoy")."""
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        mesh = _SIDECARS.get(c.get("name", ""))
        if mesh:
            return mesh
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    for key, mesh in _MESH_ANNOTATIONS.items():
        if key in annotations:
            return mesh
    return None
