"""enrich: give each call the Kubernetes identity of its two sides, from the endpoints
the node agents publish (IP → pod or service). Pure: a directory and a function."""

from __future__ import annotations

import dataclasses

from schemas.records import ApiCall, Endpoint


class Directory:
    """The latest `Endpoint` per IP (the compacted endpoints topic, folded)."""

    def __init__(self) -> None:
        self._by_ip: dict[str, Endpoint] = {}

    def update(self, endpoint: Endpoint) -> None:
        self._by_ip[endpoint.ip] = endpoint

    def remove(self, ip: str) -> None:
        self._by_ip.pop(ip, None)

    def get(self, ip: str) -> Endpoint | None:
        return self._by_ip.get(ip)

    def __len__(self) -> int:
        return len(self._by_ip)


def _side(endpoint: Endpoint | None) -> tuple[str, str, str]:
    """(pod, namespace, service) for one side."""
    if endpoint is None:
        return "", "", ""
    if endpoint.kind == "service":
        return "", endpoint.namespace, endpoint.name
    return endpoint.name, endpoint.namespace, endpoint.service


def enrich(call: ApiCall, directory: Directory) -> ApiCall:
    src, dst = directory.get(call.src_ip), directory.get(call.dst_ip)
    if src is None and dst is None:
        return call
    s_pod, s_ns, s_svc = _side(src)
    d_pod, d_ns, d_svc = _side(dst)
    return dataclasses.replace(
        call,
        src_pod=s_pod,
        src_namespace=s_ns,
        src_service=s_svc,
        dst_pod=d_pod,
        dst_namespace=d_ns,
        dst_service=d_svc,
        node=call.node or (src.node if src and src.kind == "pod" else ""),
    )
