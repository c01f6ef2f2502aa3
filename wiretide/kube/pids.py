"""Which processes on this node belong to a pod's containers: the container id appears
in each process's cgroup path (containerd, CRI-O and Docker alike)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def pids_of_containers(container_ids: Iterable[str], proc: str = "/proc") -> dict[str, list[int]]:
    wanted = [cid for cid in container_ids if len(cid) >= 12]
    found: dict[str, list[int]] = {cid: [] for cid in wanted}
    if not wanted:
        return found
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            cgroup = Path(entry.path, "cgroup").read_text()
        except OSError:
            continue  # gone, or not ours to read
        for cid in wanted:
            if cid in cgroup:
                found[cid].append(int(entry.name))
    return found


def local_pids(pods: Iterable[dict[str, Any]], node: str, proc: str = "/proc") -> list[int]:
    """The processes of those pods that run on `node` (TLS uprobes attach per process)."""
    from wiretide.kube.model import container_ids

    ids = [
        cid
        for pod in pods
        if (pod.get("spec") or {}).get("nodeName") == node
        for cid in container_ids(pod)
    ]
    return sorted({pid for pids in pids_of_containers(ids, proc).values() for pid in pids})


def pods_of_pids(
    pods: Iterable[dict[str, Any]], node: str, proc: str = "/proc"
) -> dict[int, tuple[str, str]]:
    """pid -> (namespace, pod name) of those pods' processes on `node` (what TLS coverage
    names each hooked process by)."""
    from wiretide.kube.model import container_ids

    owner: dict[str, tuple[str, str]] = {}
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") != node:
            continue
        meta = pod.get("metadata") or {}
        for cid in container_ids(pod):
            owner[cid] = (meta.get("namespace", ""), meta.get("name", ""))
    found = pids_of_containers(owner, proc)
    return {pid: owner[cid] for cid, pids in found.items() for pid in pids}
