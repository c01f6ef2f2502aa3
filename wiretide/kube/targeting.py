"""The live picture of the cluster a tap needs: which pods are targeted (their IPs to
capture), who every IP is (for the endpoints topic), kept current from a pod watch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.records import Endpoint
from wiretide.kube import model
from wiretide.kube.client import KubeApi, KubeError, WatchExpired


@dataclass(frozen=True, slots=True)
class Picture:
    targets: tuple[dict[str, Any], ...]  # the selected, running pods
    target_ips: frozenset[str]
    endpoints: tuple[Endpoint, ...]  # every pod and service IP seen
    meshed: tuple[tuple[str, str, str], ...] = field(default=())  # (ns, pod, mesh)


def picture(pods: list[dict], services: list[dict], selector: model.PodSelector) -> Picture:
    targets = tuple(p for p in pods if selector.matches(p) and model.is_running(p))
    ips = frozenset(ip for p in targets for ip in model.pod_ips(p))
    meshed = tuple(
        (p["metadata"].get("namespace", ""), p["metadata"].get("name", ""), mesh)
        for p in targets
        if (mesh := model.mesh_of(p))
    )
    return Picture(targets, ips, tuple(model.endpoints(pods, services)), meshed)


class Targeting:
    """Lists pods and services once, then follows a watch of each in a thread; every
    change calls `on_change(old, new)` with the two pictures. An expired watch (410 Gone)
    lists again (`relists` counts those)."""

    def __init__(self, api: KubeApi, selector: model.PodSelector) -> None:
        self.api = api
        self.selector = selector
        self._objects: dict[str, dict[str, dict]] = {"pods": {}, "services": {}}
        self._versions = {"pods": "", "services": ""}
        self._lock = threading.RLock()  # the two watch threads share the picture
        self.current: Picture = Picture((), frozenset(), ())
        self._stop = threading.Event()
        self.error: str | None = None
        self.relists = 0

    def refresh(self) -> Picture:
        pods, pods_version = self.api.list_pods()
        services, services_version = self.api.list_services()
        with self._lock:
            self._objects = {"pods": {_uid(p): p for p in pods},
                             "services": {_uid(s): s for s in services}}  # fmt: skip
            self._versions = {"pods": pods_version, "services": services_version}
            return self._redraw()

    def _redraw(self) -> Picture:
        pods, services = self._objects["pods"].values(), self._objects["services"].values()
        self.current = picture(list(pods), list(services), self.selector)
        return self.current

    def apply(self, kind: str, obj: dict, resource: str = "pods") -> Picture:
        """One watch event (of "pods" or "services") into the picture."""
        with self._lock:
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                self._versions[resource] = version
            if kind == "BOOKMARK":  # only a newer version to resume from
                return self.current
            if kind == "DELETED":
                self._objects[resource].pop(_uid(obj), None)
            else:
                self._objects[resource][_uid(obj)] = obj
            return self._redraw()

    def follow(self, on_change: Callable[[Picture, Picture], None]) -> None:
        for resource, watch in (("pods", self.api.watch_pods),
                                ("services", self.api.watch_services)):  # fmt: skip
            threading.Thread(target=self._follow, args=(resource, watch, on_change),
                             name=f"{resource}-watch", daemon=True).start()  # fmt: skip

    def _follow(self, resource: str, watch: Callable, on_change: Callable) -> None:
        while not self._stop.is_set():
            try:
                for kind, obj in watch(self._versions[resource], timeout_s=60):
                    self._changed(on_change, lambda k=kind, o=obj: self.apply(k, o, resource))
                    if self._stop.is_set():
                        return
                self._stop.wait(0.5)  # the server ended the watch: start another
            except WatchExpired:
                self.relists += 1
                self._relist(on_change)
            except KubeError as ex:
                self.error = str(ex)
                self._stop.wait(2.0)
            except Exception as ex:  # the watch stream ended badly: list again
                self.error = f"{resource} watch failed: {ex}"
                self._stop.wait(2.0)
                self._relist(on_change)

    def _changed(self, on_change: Callable, step: Callable[[], Picture]) -> None:
        with self._lock:
            old = self.current
            new = step()
            if new != old:
                on_change(old, new)

    def _relist(self, on_change: Callable) -> None:
        try:
            self._changed(on_change, self.refresh)
        except KubeError as ex:
            self.error = str(ex)

    def stop(self) -> None:
        self._stop.set()


def _uid(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
